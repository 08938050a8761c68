// Precompiled header shared by every program (clusterify, jcoord and each
// tests/tools/NAME). See std_common.h for the rules.
//
// CLI11 (2.1, header-only) is the bulk of every program's compile time: a
// 90-line tool took 54 s of CPU in the ASan build, nearly all of it GCC
// optimizing the ASan/UBSan-instrumented CLI11 code that each program emits
// anew. In sanitizer builds, CLI11's own functions are therefore compiled
// without optimization (they only parse the command line once); they are
// still fully instrumented and carry line info, and our code keeps the
// build's optimisation level.
// That cut the same tool to 26 s. Release builds are unchanged.
#pragma once

#include "std_common.h"

// CLI11's other standard headers come first, so that the optimize pragma
// below covers CLI11's code only, not the standard library's.
#include <cmath>
#include <exception>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <limits>
#include <locale>
#include <numeric>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <sys/stat.h>
#include <sys/types.h>

#if defined(__SANITIZE_ADDRESS__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("O0")
#include <CLI/CLI.hpp>
#pragma GCC pop_options
#else
#include <CLI/CLI.hpp>
#endif
