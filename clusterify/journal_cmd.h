// `clusterify journal dump|replay DEVICE --main|--inode N`: read or replay a
// jbd2 journal of the filesystem (its own, inode 8, or a per-slot journal
// file), with output comparable to debugfs logdump.
#pragma once

#include <CLI/CLI.hpp>

// Register the `journal` subcommand (call before parsing).
void add_journal_command(CLI::App& app);
// Run it if it was selected: returns the exit code (0 ok, 1 failed, 2 usage).
int run_journal_command(CLI::App& app);
