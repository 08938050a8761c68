// clusterify: offline conversion of an ext3 filesystem into the cext3 layout.
// The program is thin: it parses arguments and calls libcext3.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

namespace {

// A subcommand that this build cannot run yet says so and exits non-zero,
// instead of pretending to have done something.
int not_implemented(const std::string& what) {
  std::fprintf(stderr, "clusterify %s: not implemented in this build; nothing was written\n",
               what.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"clusterify: convert an ext3 filesystem in place for shared-disk cluster use, "
               "verify it, report on it, change its slot count, and revert it"};
  app.require_subcommand(1);
  std::string device;
  auto* convert = app.add_subcommand("convert", "convert a clean ext3 in place (not implemented yet)");
  convert->add_option("DEVICE", device, "image file, block device or nbd:// URI")->required();
  auto* verify = app.add_subcommand("verify", "fsck-style verification (not implemented yet)");
  verify->add_option("DEVICE", device)->required();
  auto* info = app.add_subcommand("info", "report slots, groups, journals (not implemented yet)");
  info->add_option("DEVICE", device)->required();
  auto* revert = app.add_subcommand("revert", "revert to plain ext3 (not implemented yet)");
  revert->add_option("DEVICE", device)->required();
  CLI11_PARSE(app, argc, argv);
  return not_implemented(app.get_subcommands().front()->get_name());
}
