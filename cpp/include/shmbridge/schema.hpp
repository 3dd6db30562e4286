// Protocol v2 schemas: the builder, the declaration checks C1-C9, the schema records and the
// deterministic geometry (spec/PROTOCOL.md Part II §II.2-§II.4, R-SCHEMA-1..4, 6, 7).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shmbridge/dtype.hpp"
#include "shmbridge/layout.hpp"

namespace shmbridge {

namespace layout_v2 {
inline constexpr std::uint32_t kMaxFields = 16;       // R-SCHEMA-1
inline constexpr std::size_t kNameSize = 32;          // §II.3.2 `name`, NUL-padded
inline constexpr std::size_t kNameMaxLength = 31;     // R-SCHEMA-2
inline constexpr std::size_t kFixedHeaderSize = 512;  // R-SCHEMA-5
inline constexpr std::size_t kRecordSize = 128;       // §II.3.2
inline constexpr std::size_t kEntrySize = 80;         // R-FIELD-1 (a §3.1 descriptor)
inline constexpr std::uint64_t kAlignment = 64;       // R-SCHEMA-7
}  // namespace layout_v2

// One extent of a declared field: fixed, or variable with a maximum (`upto(n)`).
struct Extent {
  std::uint64_t value = 0;  // the fixed extent, or the maximum of a variable one
  bool variable = false;
  constexpr Extent() noexcept = default;
  // Implicit, so that `{480, 640, 3}` and `{upto(100), 6}` are extent lists.
  constexpr Extent(std::uint64_t fixed) noexcept : value(fixed) {}  // NOLINT(runtime/explicit)
  constexpr Extent(std::uint64_t v, bool is_variable) noexcept : value(v), variable(is_variable) {}
  friend constexpr bool operator==(const Extent& a, const Extent& b) noexcept {
    return a.value == b.value && a.variable == b.variable;
  }
  friend constexpr bool operator!=(const Extent& a, const Extent& b) noexcept { return !(a == b); }
};

// A variable extent of at most `max` (R-SCHEMA-1).
constexpr Extent upto(std::uint64_t max) noexcept { return Extent(max, true); }

// One declared field as the caller gave it. Nothing is checked here (R-SCHEMA-3: create and
// attach report C1-C9), so a declaration that breaks the rules can still be represented.
struct FieldDecl {
  std::string name;
  DType dtype = DType::uint8;          // own storage only
  std::vector<Extent> extents;         // own storage only; empty = a 0-d field
  std::optional<std::string> inplace;  // reply fields: in place onto this request field
  bool is_inplace() const noexcept { return inplace.has_value(); }
  friend bool operator==(const FieldDecl& a, const FieldDecl& b) noexcept;
  friend bool operator!=(const FieldDecl& a, const FieldDecl& b) noexcept { return !(a == b); }
};

// A request or reply schema: an ordered list of 0 to 16 named fields (R-SCHEMA-1).
//
//   auto request = shmbridge::Schema{}.field<std::uint8_t>("image", {480, 640, 3})
//                                     .field<double>("stamp", {});
//   auto reply = shmbridge::Schema{}.field<float>("boxes", {shmbridge::upto(100), 6});
//   auto v1_like = shmbridge::Schema{}.inplace("array", "array");
class Schema {
 public:
  Schema() = default;
  Schema& field(std::string name, DType dtype, std::vector<Extent> extents);
  template <class T>
  Schema& field(std::string name, std::vector<Extent> extents) {
    return field(std::move(name), dtype_of_v<T>, std::move(extents));
  }
  // A reply field with no storage of its own, in place onto request field `target` (R-SCHEMA-4).
  Schema& inplace(std::string name, std::string target);

  const std::vector<FieldDecl>& fields() const noexcept { return fields_; }
  std::size_t size() const noexcept { return fields_.size(); }
  bool empty() const noexcept { return fields_.empty(); }
  // Index of the field named `name`, if any.
  std::optional<std::size_t> find(const std::string& name) const noexcept;
  // The peer grammar of spec/PEER.md §7.2, e.g. "image:uint8:480,640,3;stamp:float64:".
  std::string to_string() const;
  // Parses the peer grammar; throws INVALID_ARGUMENT if the text does not match it.
  static Schema parse(const std::string& spec);

  friend bool operator==(const Schema& a, const Schema& b) noexcept {
    return a.fields_ == b.fields_;
  }
  friend bool operator!=(const Schema& a, const Schema& b) noexcept { return !(a == b); }

 private:
  std::vector<FieldDecl> fields_;
};

// One schema record (§II.3.2): a field as the header stores it.
struct FieldRecord {
  std::string name;
  std::uint32_t dtype = 0;
  std::uint32_t ndim = 0;
  std::uint32_t variable_mask = 0;
  std::uint32_t alias = 0;  // 0: own storage; k + 1: in place onto request field k
  std::array<std::uint64_t, layout::kMaxDims> max_shape{};
  std::uint64_t offset = 0;
  std::uint64_t max_nbytes = 0;

  bool variable(std::size_t d) const noexcept { return (variable_mask >> d) & 1u; }
  bool fixed_only() const noexcept { return variable_mask == 0; }
  DType dtype_value() const noexcept { return static_cast<DType>(dtype); }
  // The shape of a fresh message (R-FIELD-2): fixed extents as declared, variable extents 0.
  Shape initial_shape() const;
  Shape max_shape_of() const;
  friend bool operator==(const FieldRecord& a, const FieldRecord& b) noexcept;
  friend bool operator!=(const FieldRecord& a, const FieldRecord& b) noexcept { return !(a == b); }
};

// The geometry block (§II.3.1).
struct Geometry {
  std::uint32_t request_fields = 0;
  std::uint32_t reply_fields = 0;
  std::uint64_t request_area_offset = 0;
  std::uint64_t request_area_size = 0;
  std::uint64_t reply_area_offset = 0;
  std::uint64_t reply_area_size = 0;
  friend bool operator==(const Geometry& a, const Geometry& b) noexcept;
  friend bool operator!=(const Geometry& a, const Geometry& b) noexcept { return !(a == b); }
};

// A schema pair as a v2 segment holds it: the records placed by R-SCHEMA-7.
struct SchemaLayout {
  std::vector<FieldRecord> request;
  std::vector<FieldRecord> reply;
  Geometry geometry;
  std::uint32_t header_size = 0;
  std::uint64_t capacity = 0;
  std::uint64_t segment_size = 0;

  const std::vector<FieldRecord>& side(bool reply_side) const noexcept {
    return reply_side ? reply : request;
  }
  // The schemas back in the builder's form (what attach found).
  Schema request_schema() const;
  Schema reply_schema() const;
};

// R-SCHEMA-3: checks C1-C8 on the request schema, then on the reply schema, then C9, and places
// both (R-SCHEMA-6, R-SCHEMA-7). Throws the error of the first failing check, naming the field as
// the caller gave it (R-FIELD-7; C1 and C9 name none).
SchemaLayout declare_schemas(const Schema& request, const Schema& reply);

// R-SCHEMA-10: C1-C8 on the schemas an attacher states (nullptr: none stated), the request schema
// first; C4 only asks that an in-place field be in the reply schema and target a name no earlier
// reply field targets (whether the target exists is X6).
void check_expected_schemas(const Schema* request, const Schema* reply);

// R-SCHEMA-2: 1 to 31 characters of [A-Za-z_][A-Za-z0-9_]*.
bool is_valid_field_name(const std::string& name) noexcept;

}  // namespace shmbridge
