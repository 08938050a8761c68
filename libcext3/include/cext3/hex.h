// Lower-case hex of bytes and back: how the control socket carries binary
// data (file contents, xattr values, lock value blocks) in a text line.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cext3 {

std::string to_hex(const uint8_t* p, size_t n);
// False (and *out unspecified) on an odd length or a non-hex character;
// either case of a-f is accepted.
bool from_hex(std::string_view s, std::vector<uint8_t>* out);

}  // namespace cext3
