// jcoord: the per-node cluster daemon. The program is thin: it parses
// arguments and calls libcext3.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  CLI::App app{"jcoord: per-node daemon that mounts a cext3 disk and coordinates with the "
               "other nodes (membership, locks, journals, recovery)"};
  app.require_subcommand(1);
  std::string config;
  auto* start = app.add_subcommand("start", "run a node in the foreground (not implemented yet)");
  start->add_option("--config", config, "YAML configuration file")->required();
  app.add_subcommand("status", "show the cluster as this node sees it (not implemented yet)");
  CLI11_PARSE(app, argc, argv);
  std::fprintf(stderr, "jcoord %s: not implemented in this build\n",
               app.get_subcommands().front()->get_name().c_str());
  return 2;
}
