// `jcoord exec`: filesystem operations on a running node, by path.
#pragma once

#include <string>
#include <vector>

// Returns the process exit code: 0 done, 1 the operation failed (one line
// on stderr with the errno's text), 2 usage.
int run_exec(const std::string& socket, const std::vector<std::string>& args);
