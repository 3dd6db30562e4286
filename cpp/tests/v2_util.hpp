// Helpers shared by the protocol v2 tests: the structured forms of spec/vectors/README.md
// ("Protocol v2 vectors") as C++ values, and a requester/responder pair on one fresh v2 segment.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace shmbridge::test {

inline std::string bytes_hex(const std::uint8_t* p, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

// A dtype name of spec/dtypes.json; "object" (a dtype the protocol does not support) is a value
// outside the table, as the vectors README says.
inline DType dtype_named(const std::string& name) {
  DType d = static_cast<DType>(0);
  if (name != "object" && !dtype_from_name(name, d)) throw std::runtime_error("dtype " + name);
  return d;
}

// A u64 from a vector value; nullopt if C++'s unsigned extents cannot express it (negative, or
// above 2^64 - 1): such a declaration case is "not applicable" in C++ (vectors README).
inline std::optional<std::uint64_t> u64_of(const nlohmann::json& v) {
  if (!v.is_number_unsigned()) return std::nullopt;
  return v.get<std::uint64_t>();
}

// The structured form of a declared field list; nullopt when it is not expressible in C++.
inline std::optional<Schema> schema_of(const nlohmann::json& fields) {
  Schema s;
  for (const auto& f : fields) {
    const std::string name = f["name"];
    if (f.contains("inplace")) {
      s.inplace(name, f["inplace"].get<std::string>());
      continue;
    }
    std::vector<Extent> extents;
    for (const auto& e : f["shape"]) {
      const bool variable = e.is_object();
      const auto v = u64_of(variable ? e["upto"] : e);
      if (!v) return std::nullopt;
      extents.emplace_back(*v, variable);
    }
    s.field(name, dtype_named(f["dtype"]), extents);
  }
  return s;
}

inline Shape shape_of(const nlohmann::json& j) {
  std::vector<std::uint64_t> dims;
  for (const auto& d : j) dims.push_back(d.get<std::uint64_t>());
  return Shape(dims);
}

inline FieldRecord record_of(const nlohmann::json& j) {
  FieldRecord r;
  r.name = j["name"];
  r.dtype = j["dtype"];
  r.ndim = j["ndim"];
  r.variable_mask = j["variable_mask"];
  r.alias = j["alias"];
  for (std::size_t d = 0; d < j["max_shape"].size(); ++d) r.max_shape[d] = j["max_shape"][d];
  r.offset = j["offset"];
  r.max_nbytes = j["max_nbytes"];
  return r;
}

inline std::vector<FieldRecord> records_of(const nlohmann::json& j) {
  std::vector<FieldRecord> out;
  for (const auto& r : j) out.push_back(record_of(r));
  return out;
}

inline TableEntry entry_of(const nlohmann::json& j) { return descriptor_of(j); }

// Runs `f` and returns the Error it throws (nullopt if none).
template <class F>
std::optional<Error> error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  return std::nullopt;
}

// The expected (error, field) of a vector: "ok" and "" when it succeeds; the field "" when null.
inline std::string vector_field(const nlohmann::json& v) {
  return v["field"].is_null() ? std::string() : v["field"].get<std::string>();
}

// Zero-filled bytes for an array of `dtype` and `shape` (at least one byte, so data() != null).
inline std::vector<std::uint8_t> zeros_for(DType dtype, const Shape& shape) {
  std::uint64_t n = 0;
  if (!shape.element_count(n)) n = 0;
  return std::vector<std::uint8_t>(static_cast<std::size_t>(n * itemsize(dtype)) + 1, 0);
}

// A requester that created a v2 segment and a responder attached to it, in this process.
struct V2Pair {
  UniqueName name;
  MessageRequester req;
  MessageResponder rsp;
  Segment raw;  // a separate mapping, for reading and poking the areas as a rogue would

  V2Pair(const Schema& request, const Schema& reply, const Options& opt = fast_options(),
         const std::string& tag = "v2")
      : name(tag),
        req(MessageRequester::create(name, request, reply, opt)),
        rsp(MessageResponder::attach(name, opt)),
        raw(Segment::attach(name, std::chrono::seconds(1))) {}

  const SchemaLayout& layout() const { return req.schemas(); }
  std::uint8_t* area(bool reply) const {
    const Geometry& g = layout().geometry;
    return raw.base() + (reply ? g.reply_area_offset : g.request_area_offset);
  }
  std::uint64_t area_size(bool reply) const {
    const Geometry& g = layout().geometry;
    return reply ? g.reply_area_size : g.request_area_size;
  }
  std::vector<std::uint8_t> snapshot(bool reply) const {
    return std::vector<std::uint8_t>(area(reply), area(reply) + area_size(reply));
  }
};

// Zeros for every field of `records` with `shapes` (schema order), kept alive for a send.
struct ZeroFields {
  std::vector<std::vector<std::uint8_t>> data;
  std::vector<NamedField> fields;
  ZeroFields(const std::vector<FieldRecord>& records, const std::vector<Shape>& shapes) {
    data.reserve(records.size());
    for (std::size_t k = 0; k < records.size(); ++k) {
      data.push_back(zeros_for(records[k].dtype_value(), shapes[k]));
    }
    for (std::size_t k = 0; k < records.size(); ++k) {
      fields.push_back(
          {records[k].name, FieldRef(data[k].data(), records[k].dtype_value(), shapes[k])});
    }
  }
};

inline std::vector<Shape> initial_shapes(const std::vector<FieldRecord>& records) {
  std::vector<Shape> out;
  for (const auto& r : records) out.push_back(r.initial_shape());
  return out;
}

}  // namespace shmbridge::test
