// Subcommands this build cannot run yet say so and exit non-zero, instead of
// pretending to have done something.
#include <cstdio>

#include "commands.h"

namespace clusterify {
namespace {
int not_implemented(const char* what) {
  std::fprintf(stderr, "clusterify %s: not implemented in this build; nothing was written\n", what);
  return 2;
}
}  // namespace

int run_revert(const RevertArgs&) { return not_implemented("revert"); }
int run_slots(const SlotsArgs&) { return not_implemented("slots"); }

}  // namespace clusterify
