// Precompiled header: the standard-library headers that most translation
// units of cext3 include. Parsing them costs more CPU than compiling most of
// our own files (an ASan TU spends seconds in <string>/<map>/<thread> alone),
// so CMakeLists.txt compiles this once per target family and force-includes
// it. Only a build-speed device: every source file still includes what it
// uses itself, and the tree must build with
// -DCMAKE_DISABLE_PRECOMPILE_HEADERS=ON too.
// Listed here: headers included by about seven or more of our files.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>
