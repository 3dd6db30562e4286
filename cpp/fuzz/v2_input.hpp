// The input format of the v2 fuzz target and its differential oracle (fuzz_v2.cpp,
// header_oracle.cpp): 8 bytes little-endian mapping size, then the first bytes of the OS object
// (the header, at most 4608 bytes), then the request table and the reply table (80 bytes per
// field). make_seeds.py writes the v2 vectors in this format; differential.py reads it.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>

#include "shmbridge/layout.hpp"
#include "shmbridge/layout_v2.hpp"

namespace shmbridge {

struct V2Input {
  std::uint64_t mapping = 0;
  // Exactly min(mapping, 4608) bytes (at least 1): a validator reading beyond the mapping or the
  // largest header reads beyond this block (ASan).
  std::unique_ptr<std::uint8_t[]> header;
  std::size_t header_size = 0;
  // 80 x 32 bytes: the two tables a valid header's field counts allow, zero-padded.
  std::unique_ptr<std::uint8_t[]> tables;
};

inline constexpr std::size_t kV2TablesSize = layout_v2::kEntrySize * 32;

// The header bytes are the input's bytes 8 .. 8 + min(mapping, 4608), zero-padded; the tables
// follow the header the header_size field names (clamped to the bytes given).
inline V2Input split_v2_input(const std::uint8_t* data, std::size_t size) {
  V2Input in;
  for (std::size_t i = 0; i < 8 && i < size; ++i) in.mapping |= std::uint64_t{data[i]} << (8 * i);
  const std::uint8_t* body = size > 8 ? data + 8 : data;
  const std::size_t body_size = size > 8 ? size - 8 : 0;
  in.header_size = static_cast<std::size_t>(
      in.mapping < layout_v2::kMaxHeaderSize ? in.mapping : layout_v2::kMaxHeaderSize);
  const std::size_t alloc = in.header_size ? in.header_size : 1;
  in.header.reset(new std::uint8_t[alloc]);
  std::memset(in.header.get(), 0, alloc);
  std::memcpy(in.header.get(), body, body_size < in.header_size ? body_size : in.header_size);
  // The tables start where the input's own header ends (its header_size field, if readable).
  std::size_t table_at = layout_v2::kFixedHeaderSize;
  if (body_size >= 16) {
    const std::uint32_t hs = layout::load_u32(body + layout::kOffHeaderSize);
    if (hs >= layout_v2::kFixedHeaderSize && hs <= layout_v2::kMaxHeaderSize) table_at = hs;
  }
  in.tables.reset(new std::uint8_t[kV2TablesSize]);
  std::memset(in.tables.get(), 0, kV2TablesSize);
  if (body_size > table_at) {
    const std::size_t n = body_size - table_at;
    std::memcpy(in.tables.get(), body + table_at, n < kV2TablesSize ? n : kV2TablesSize);
  }
  return in;
}

// Bytes of a v2 header that are reserved (R-SCHEMA-5): written as zero, ignored on read.
inline bool v2_reserved(std::size_t i) {
  return (i >= 0x28 && i < 0x40) || (i >= 0x68 && i < 0xE0) || (i >= 0xE4 && i < 0x100) ||
         (i >= 0x108 && i < 0x140) || (i >= 0x158 && i < 0x160) || (i >= 0x178 && i < 0x180) ||
         (i >= 0x198 && i < 0x200);
}

}  // namespace shmbridge
