#include "shmbridge/message_table.hpp"

#include <string>

#include "exact_math.hpp"
#include "shmbridge/errors.hpp"

namespace shmbridge {

using layout_v2::kEntrySize;

TableEntry table_entry(const FieldRecord& record, const Shape& shape) {
  TableEntry e;
  e.dtype = record.dtype;
  e.ndim = static_cast<std::uint32_t>(shape.ndim());
  std::copy(shape.begin(), shape.end(), e.shape.begin());
  std::uint64_t n = 0;
  shape.element_count(n);  // callers pass shapes within the field's maxima (R-FIELD-4..6)
  e.nbytes = n * itemsize(record.dtype_value());
  return e;
}

std::vector<TableEntry> initial_table(const std::vector<FieldRecord>& records) {
  std::vector<TableEntry> t;
  for (const FieldRecord& r : records) t.push_back(table_entry(r, r.initial_shape()));
  return t;
}

void encode_table(const std::vector<TableEntry>& entries, std::uint8_t* out) {
  for (std::size_t k = 0; k < entries.size(); ++k)
    encode_descriptor(entries[k], out + kEntrySize * k);
}

namespace {

std::string shape_text(const std::uint64_t* dims, std::size_t ndim) {
  return Shape(dims, ndim).to_string();
}

[[noreturn]] void bad_entry(ErrorCode code, const FieldRecord& r, const char* check,
                            const std::string& expected, const std::string& found) {
  raise_field(code, r.name, expected + " in its message table entry (" + check + ")", found,
              code == ErrorCode::CORRUPT_HEADER
                  ? "the entry is damaged or was written by a rogue process; restart both peers"
                  : "the sender must send the declared dtype and shape");
}

}  // namespace

std::vector<TableEntry> validate_table(const std::vector<FieldRecord>& records,
                                       const std::uint8_t* table) {
  std::vector<TableEntry> out;
  out.reserve(records.size());
  for (std::size_t k = 0; k < records.size(); ++k) {
    const FieldRecord& r = records[k];
    const TableEntry e = decode_descriptor(table + kEntrySize * k);
    if (!is_dtype_code(e.dtype)) {  // E1
      bad_entry(ErrorCode::CORRUPT_HEADER, r, "E1", "a dtype code 1..14",
                "code " + std::to_string(e.dtype));
    }
    if (e.ndim > layout::kMaxDims) {  // E2
      bad_entry(ErrorCode::CORRUPT_HEADER, r, "E2", "ndim <= 8", "ndim " + std::to_string(e.ndim));
    }
    for (std::size_t d = e.ndim; d < layout::kMaxDims; ++d) {  // E3
      if (e.shape[d]) {
        bad_entry(ErrorCode::CORRUPT_HEADER, r, "E3", "shape[" + std::to_string(d) + "] = 0",
                  std::to_string(e.shape[d]));
      }
    }
    std::uint64_t n = 0, bytes = 0;
    if (!e.shape_of().element_count(n) ||
        detail::mul_overflow(n, itemsize(static_cast<DType>(e.dtype)), &bytes) ||
        bytes != e.nbytes) {  // E4: exact, a product above 2^64 - 1 never matches
      bad_entry(ErrorCode::CORRUPT_HEADER, r, "E4", "nbytes = itemsize x product(shape)",
                "nbytes " + std::to_string(e.nbytes) + " for shape " +
                    shape_text(e.shape.data(), e.ndim));
    }
    if (e.dtype != r.dtype) {  // E5
      bad_entry(ErrorCode::DTYPE_MISMATCH, r, "E5",
                std::string("dtype ") + dtype_name(r.dtype_value()),
                std::string("dtype ") + dtype_name(static_cast<DType>(e.dtype)));
    }
    if (e.ndim != r.ndim) {  // E6
      bad_entry(ErrorCode::SHAPE_MISMATCH, r, "E6", std::to_string(r.ndim) + " dimensions",
                std::to_string(e.ndim) + " dimensions");
    }
    for (std::size_t d = 0; d < r.ndim; ++d) {  // E7
      if (!r.variable(d) && e.shape[d] != r.max_shape[d]) {
        bad_entry(ErrorCode::SHAPE_MISMATCH, r, "E7",
                  "the declared shape " + r.max_shape_of().to_string(),
                  "shape " + shape_text(e.shape.data(), e.ndim));
      }
    }
    for (std::size_t d = 0; d < r.ndim; ++d) {  // E8
      if (r.variable(d) && e.shape[d] > r.max_shape[d]) {
        bad_entry(ErrorCode::CORRUPT_HEADER, r, "E8",
                  "extent " + std::to_string(d) + " at most " + std::to_string(r.max_shape[d]),
                  "shape " + shape_text(e.shape.data(), e.ndim));
      }
    }
    out.push_back(e);
  }
  return out;
}

void check_field_values(const FieldRecord& r, const std::optional<DType>& dtype,
                        const Shape& shape) {
  const std::string declared = r.max_shape_of().to_string();
  if (dtype && static_cast<std::uint32_t>(*dtype) != r.dtype) {  // S4 (no conversion)
    raise_field(
        ErrorCode::DTYPE_MISMATCH, r.name, std::string("dtype ") + dtype_name(r.dtype_value()),
        is_dtype_code(static_cast<std::uint32_t>(*dtype))
            ? std::string("dtype ") + dtype_name(*dtype)
            : "unsupported dtype code " + std::to_string(static_cast<std::uint32_t>(*dtype)),
        "convert the array to the field's dtype");
  }
  if (shape.ndim() != r.ndim) {  // S5
    raise_field(ErrorCode::SHAPE_MISMATCH, r.name,
                std::to_string(r.ndim) + " dimensions (declared " + declared + ")",
                "shape " + shape.to_string(), "reshape the array to the field's dimensions");
  }
  for (std::size_t d = 0; d < r.ndim; ++d) {  // S6
    if (!r.variable(d) && shape[d] != r.max_shape[d]) {
      raise_field(ErrorCode::SHAPE_MISMATCH, r.name,
                  "extent " + std::to_string(r.max_shape[d]) + " in dimension " +
                      std::to_string(d) + " (declared " + declared + ")",
                  "shape " + shape.to_string(), "reshape the array to the declared extents");
    }
  }
  for (std::size_t d = 0; d < r.ndim; ++d) {  // S7
    if (r.variable(d) && shape[d] > r.max_shape[d]) {
      raise_field(ErrorCode::CAPACITY_EXCEEDED, r.name,
                  "at most " + std::to_string(r.max_shape[d]) + " in dimension " +
                      std::to_string(d) + " (declared " + declared + ")",
                  "shape " + shape.to_string(),
                  "send fewer elements, or declare a larger maximum when creating the segment");
    }
  }
}

namespace detail {

void unknown_field(std::string_view name, const std::vector<FieldRecord>& records) {
  std::string names;
  for (const FieldRecord& r : records) names += (names.empty() ? "'" : ", '") + r.name + "'";
  raise_field(ErrorCode::SCHEMA_MISMATCH, std::string(name),
              "a field of the schema (" + (names.empty() ? std::string("none") : names) + ")",
              "'" + std::string(name) + "'", "use the schema's field names");
}

void field_given_twice(std::string_view name) {
  raise_field(ErrorCode::SCHEMA_MISMATCH, std::string(name), "each field given once",
              "'" + std::string(name) + "' twice", "give the field once");
}

void field_missing(const FieldRecord& r) {
  raise_field(ErrorCode::SCHEMA_MISMATCH, r.name, "every field of the schema given",
              "no '" + r.name + "'", "give the field (an array, or a shape for a buffer)");
}

}  // namespace detail

}  // namespace shmbridge
