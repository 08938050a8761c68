// JSON output helpers for --json: the library's (cext3/json.h).
#pragma once

#include "cext3/json.h"

namespace clusterify {

using cext3::json_bool;
using cext3::json_str;

}  // namespace clusterify
