// Protocol v2 message tables: the entry of each field of a message, written by the sender and
// validated by the receiver (checks E1-E8), and the checks of the fields a caller gives to a send
// or reply (S1-S7). spec/PROTOCOL.md Part II §II.6-§II.8, R-FIELD-1, 2, 4-8.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "shmbridge/layout.hpp"
#include "shmbridge/schema.hpp"

namespace shmbridge {

// A message table entry is a §3.1 descriptor (R-FIELD-1): dtype, ndim, shape[8], nbytes.
using TableEntry = Descriptor;

// The entry of a field of `record` with `shape` (dtype and ndim the field's).
TableEntry table_entry(const FieldRecord& record, const Shape& shape);
// R-FIELD-2: the table a creator writes, fixed extents as declared and variable extents 0.
std::vector<TableEntry> initial_table(const std::vector<FieldRecord>& records);
// Writes 80 bytes per entry.
void encode_table(const std::vector<TableEntry>& entries, std::uint8_t* out);

// R-FIELD-8: validates the message table at `table` (80 bytes per record) as the table of
// `records`, entries in schema order, each by E1-E8; returns the entries or throws the first
// failing check's error naming the entry's field (R-FIELD-7).
std::vector<TableEntry> validate_table(const std::vector<FieldRecord>& records,
                                       const std::uint8_t* table);

// What a caller gives for one field: its name, and for the copying API its array's dtype (the
// zero-copy API has none, so no S4) and its shape.
struct GivenField {
  std::string_view name;
  std::optional<DType> dtype;
  Shape shape;
};

// S1, S2 (one pass over `given` in the caller's order), then S3 in schema order, where
// `may_omit(k)` says whether schema field k may be left out. Returns, for each schema field,
// the index in `given` of its entry, or -1.
using FieldMatch = std::array<int, layout_v2::kMaxFields>;
template <class MayOmit>
FieldMatch match_given(const std::vector<FieldRecord>& records, const GivenField* given,
                       std::size_t count, MayOmit&& may_omit);

// S4-S7 for one field: the dtype (if given), ndim, fixed extents, variable extents <= maximum.
void check_field_values(const FieldRecord& record, const std::optional<DType>& dtype,
                        const Shape& shape);

namespace detail {
[[noreturn]] void unknown_field(std::string_view name, const std::vector<FieldRecord>& records);
[[noreturn]] void field_given_twice(std::string_view name);
[[noreturn]] void field_missing(const FieldRecord& record);
}  // namespace detail

template <class MayOmit>
FieldMatch match_given(const std::vector<FieldRecord>& records, const GivenField* given,
                       std::size_t count, MayOmit&& may_omit) {
  FieldMatch at;
  at.fill(-1);
  for (std::size_t i = 0; i < count; ++i) {
    std::size_t k = 0;
    while (k < records.size() && records[k].name != given[i].name) ++k;
    if (k == records.size()) detail::unknown_field(given[i].name, records);  // S1
    if (at[k] >= 0) detail::field_given_twice(given[i].name);                // S2
    at[k] = static_cast<int>(i);
  }
  for (std::size_t k = 0; k < records.size(); ++k) {  // S3
    if (at[k] < 0 && !may_omit(k)) detail::field_missing(records[k]);
  }
  return at;
}

}  // namespace shmbridge
