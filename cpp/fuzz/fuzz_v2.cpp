// libFuzzer target: protocol v2 header validation (R-SCHEMA-9: H1-H16, F1-F9) and message table
// validation (R-FIELD-8: E1-E8) of arbitrary bytes (spec/PROTOCOL.md Part II).
//
// Input (v2_input.hpp): 8 bytes little-endian mapping size, then the first bytes of the OS object
// (the header, up to 4608 bytes, zero-padded), then the request table and the reply table (80
// bytes per field, zero-padded). The header lives in a heap block of exactly min(mapping size,
// 4608) bytes, so ASan reports any read beyond the mapping or beyond the largest v2 header.
// Checks: only shmbridge::Error with a header error code and no field escapes the validator; a
// header that validates satisfies the invariants R-SCHEMA-7 promises and re-encodes to itself up
// to the reserved bytes; a table either validates to entries within the field's maxima or fails
// with E1-E8's errors naming one of its fields.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "fuzz_check.hpp"
#include "shmbridge/errors.hpp"
#include "shmbridge/layout_v2.hpp"
#include "shmbridge/message_table.hpp"
#include "v2_input.hpp"

using namespace shmbridge;

namespace {

void check_valid_header(const HeaderV2& h, const V2Input& in) {
  CHECK(h.version_major == layout_v2::kVersionMajor);
  CHECK(h.header_size <= layout_v2::kMaxHeaderSize && h.header_size % 64 == 0);
  CHECK(h.request.size() <= 16 && h.reply.size() <= 16);
  CHECK(h.segment_size <= in.mapping);
  for (const auto* side : {&h.request, &h.reply}) {
    for (const FieldRecord& r : *side) {
      CHECK(is_valid_field_name(r.name));
      CHECK(r.offset % 64 == 0 && r.offset >= h.header_size);
      CHECK(r.max_nbytes <= h.segment_size - r.offset);  // the storage lies inside the mapping
    }
  }
  // What validates is what a creator of these schemas writes (R-SCHEMA-6, R-SCHEMA-7).
  const SchemaLayout again =
      declare_schemas(h.schemas().request_schema(), h.schemas().reply_schema());
  CHECK(again.request == h.request && again.reply == h.reply && again.geometry == h.geometry);
  CHECK(again.capacity == h.capacity && again.segment_size == h.segment_size);
  std::unique_ptr<std::uint8_t[]> bytes(new std::uint8_t[h.header_size]);
  encode_header_v2(h, bytes.get());
  for (std::size_t i = 0; i < h.header_size; ++i) {
    CHECK(v2_reserved(i) ? bytes[i] == 0 : bytes[i] == in.header[i]);
  }
}

void check_table(const std::vector<FieldRecord>& records, const std::uint8_t* table) {
  try {
    const auto entries = validate_table(records, table);
    CHECK(entries.size() == records.size());
    for (std::size_t k = 0; k < records.size(); ++k) {
      CHECK(entries[k].dtype == records[k].dtype && entries[k].ndim == records[k].ndim);
      CHECK(entries[k].nbytes <= records[k].max_nbytes);
      for (std::size_t d = 0; d < records[k].ndim; ++d) {
        CHECK(entries[k].shape[d] <= records[k].max_shape[d]);
      }
    }
  } catch (const Error& e) {
    const ErrorCode c = e.code();
    CHECK(c == ErrorCode::CORRUPT_HEADER || c == ErrorCode::DTYPE_MISMATCH ||
          c == ErrorCode::SHAPE_MISMATCH);
    bool named = false;
    for (const FieldRecord& r : records) named = named || r.name == e.field();
    CHECK(named);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const V2Input in = split_v2_input(data, size);
  HeaderV2 h;
  try {
    h = validate_header_v2(in.header.get(), in.mapping);
  } catch (const Error& e) {
    const ErrorCode c = e.code();
    CHECK(c == ErrorCode::CORRUPT_HEADER || c == ErrorCode::VERSION_MISMATCH ||
          c == ErrorCode::SEGMENT_NOT_FOUND);
    CHECK(e.field().empty());  // header errors name no field (R-SCHEMA-9)
    CHECK(std::strlen(e.what()) > 0);
    return 0;
  }
  check_valid_header(h, in);
  check_table(h.request, in.tables.get());
  check_table(h.reply, in.tables.get() + layout_v2::kEntrySize * h.request.size());
  return 0;
}
