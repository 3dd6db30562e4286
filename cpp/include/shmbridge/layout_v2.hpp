// The protocol v2 header: the fixed 512-byte part, the geometry block and the schema table
// (spec/PROTOCOL.md Part II §II.3, §II.5, §II.10; spec/layout_v2.json). Mirrors layout.hpp:
// fields are encoded and decoded byte by byte, little-endian, never through a packed struct.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "shmbridge/layout.hpp"
#include "shmbridge/schema.hpp"

namespace shmbridge {

namespace layout_v2 {
inline constexpr std::uint16_t kVersionMajor = 2;
inline constexpr std::uint16_t kVersionMinor = 0;
inline constexpr std::size_t kMaxHeaderSize = 4608;  // 512 + 128 x 32

// Geometry block (§II.3.1) at 0x040; offsets relative to the block.
inline constexpr std::size_t kOffGeometry = 0x040;
inline constexpr std::size_t kGeometrySize = 80;
inline constexpr std::size_t kGeoRequestFields = 0;
inline constexpr std::size_t kGeoReplyFields = 4;
inline constexpr std::size_t kGeoRequestAreaOffset = 8;
inline constexpr std::size_t kGeoRequestAreaSize = 16;
inline constexpr std::size_t kGeoReplyAreaOffset = 24;
inline constexpr std::size_t kGeoReplyAreaSize = 32;

// Schema table (§II.3.2) at 0x200: request records, then reply records.
inline constexpr std::size_t kOffSchemaTable = 0x200;
inline constexpr std::size_t kRecName = 0;
inline constexpr std::size_t kRecDType = 32;
inline constexpr std::size_t kRecNdim = 36;
inline constexpr std::size_t kRecVariableMask = 40;
inline constexpr std::size_t kRecAlias = 44;
inline constexpr std::size_t kRecMaxShape = 48;
inline constexpr std::size_t kRecOffset = 112;
inline constexpr std::size_t kRecMaxNbytes = 120;
}  // namespace layout_v2

// A whole v2 header, decoded: the fields of every version, the geometry and the schema table.
struct HeaderV2 : FixedHeader {
  Geometry geometry;
  std::vector<FieldRecord> request;
  std::vector<FieldRecord> reply;

  HeaderV2() { version_major = layout_v2::kVersionMajor; }
  // The header of a fresh segment for declared schemas (R-SCHEMA-8), slots and word zero.
  static HeaderV2 fresh(const SchemaLayout& schemas);
  SchemaLayout schemas() const;
  friend bool operator==(const HeaderV2& a, const HeaderV2& b) noexcept;
  friend bool operator!=(const HeaderV2& a, const HeaderV2& b) noexcept { return !(a == b); }
};

// R-SCHEMA-5, R-SCHEMA-6: writes all header_size bytes (reserved bytes zero).
void encode_header_v2(const HeaderV2& h, std::uint8_t* out);

// R-SCHEMA-9: checks H1-H16 (F1-F9 for each record) in order and returns the decoded header.
// Reads only the first 512 bytes of `data` until H10 has passed, then at most header_size bytes;
// never the message tables. Throws the first failing check's error (naming no field).
HeaderV2 validate_header_v2(const std::uint8_t* data, std::uint64_t mapping_size);

// R-VER-2..4, R-VER-6: the header of segment `name` as seen by the API of protocol `api_major`
// (1: Requester/Responder, 2: MessageRequester/MessageResponder): H1-H3 as both versions check
// them, then version_major, then that version's full validation. A segment of the other version
// is VERSION_MISMATCH with R-VER-3's or R-VER-4's message; any other version names the one found
// and the ones supported.
void validate_header_for_api(const std::uint8_t* data, std::uint64_t mapping_size, int api_major,
                             const std::string& name);

// R-VER-7: a header that validates as v1 (Part I) or as v2 (R-SCHEMA-9); else the error of the
// version it claims (VERSION_MISMATCH for an unknown version_major).
void validate_any_header(const std::uint8_t* data, std::uint64_t mapping_size);

// R-SCHEMA-10 (checks X1-X6): compares the schemas an attacher states (nullptr: none) with the
// segment's, the request schema first; throws the first failing check's error naming the field.
void check_expectations(const SchemaLayout& segment, const Schema* request, const Schema* reply);

}  // namespace shmbridge
