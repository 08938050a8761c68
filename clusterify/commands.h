// The clusterify subcommands other than convert (which lives in main.cpp).
#pragma once

#include <cstdint>
#include <string>

namespace clusterify {

struct InfoArgs {
  std::string device;
  bool json = false;
};
struct VerifyArgs {
  std::string device;
  bool no_change = false, preen = false, yes = false, force = false, json = false;
};
struct RevertArgs {
  std::string device;
  bool dry_run = false;
};
struct SlotsArgs {
  std::string device;
  uint32_t slots = 0;
  uint32_t journal_mib = 0;
  bool dry_run = false;
};

int run_info(const InfoArgs& a);
int run_verify(const VerifyArgs& a);
int run_revert(const RevertArgs& a);
int run_slots(const SlotsArgs& a);

}  // namespace clusterify
