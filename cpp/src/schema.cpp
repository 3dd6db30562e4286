#include "shmbridge/schema.hpp"

#include <algorithm>
#include <sstream>

#include "exact_math.hpp"
#include "placement.hpp"
#include "shmbridge/errors.hpp"

namespace shmbridge {

using layout_v2::kMaxFields;

// ---- builder ----------------------------------------------------------------------------------

bool operator==(const FieldDecl& a, const FieldDecl& b) noexcept {
  if (a.name != b.name || a.inplace != b.inplace) return false;
  return a.is_inplace() || (a.dtype == b.dtype && a.extents == b.extents);
}

Schema& Schema::field(std::string name, DType dtype, std::vector<Extent> extents) {
  FieldDecl f;
  f.name = std::move(name);
  f.dtype = dtype;
  f.extents = std::move(extents);
  fields_.push_back(std::move(f));
  return *this;
}

Schema& Schema::inplace(std::string name, std::string target) {
  FieldDecl f;
  f.name = std::move(name);
  f.inplace = std::move(target);
  fields_.push_back(std::move(f));
  return *this;
}

std::optional<std::size_t> Schema::find(const std::string& name) const noexcept {
  for (std::size_t i = 0; i < fields_.size(); ++i) {
    if (fields_[i].name == name) return i;
  }
  return std::nullopt;
}

std::string Schema::to_string() const {
  std::ostringstream s;
  for (std::size_t i = 0; i < fields_.size(); ++i) {
    const FieldDecl& f = fields_[i];
    s << (i ? ";" : "") << f.name;
    if (f.is_inplace()) {
      s << ":=" << *f.inplace;
      continue;
    }
    s << ':' << dtype_name(f.dtype) << ':';
    for (std::size_t d = 0; d < f.extents.size(); ++d) {
      s << (d ? "," : "") << (f.extents[d].variable ? "<=" : "") << f.extents[d].value;
    }
  }
  return s.str();
}

namespace {

[[noreturn]] void bad_spec(const std::string& spec, const std::string& why) {
  raise(ErrorCode::INVALID_ARGUMENT, "a schema in the grammar of spec/PEER.md §7.2",
        "'" + spec + "' (" + why + ")",
        "write fields as name:dtype:extents or name:=target, separated by ';'");
}

bool is_spec_name(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// uint = "0" / ( %x31-39 *DIGIT ), at most 2^64 - 1.
bool parse_uint(const std::string& s, std::uint64_t& out) {
  if (s.empty() || (s.size() > 1 && s[0] == '0')) return false;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    if (detail::mul_overflow(v, 10, &v) ||
        detail::add_overflow(v, static_cast<std::uint64_t>(c - '0'), &v)) {
      return false;
    }
  }
  out = v;
  return true;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string::size_type start = 0;
  for (;;) {
    const auto at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return out;
    start = at + 1;
  }
}

}  // namespace

Schema Schema::parse(const std::string& spec) {
  Schema out;
  if (spec.empty()) return out;
  for (const std::string& part : split(spec, ';')) {
    const auto colon = part.find(':');
    if (colon == std::string::npos) bad_spec(spec, "field '" + part + "' has no ':'");
    const std::string name = part.substr(0, colon);
    if (!is_spec_name(name)) bad_spec(spec, "bad name '" + name + "'");
    const std::string rest = part.substr(colon + 1);
    if (!rest.empty() && rest[0] == '=') {
      const std::string target = rest.substr(1);
      if (!is_spec_name(target)) bad_spec(spec, "bad in-place target '" + target + "'");
      out.inplace(name, target);
      continue;
    }
    const auto colon2 = rest.find(':');
    if (colon2 == std::string::npos) bad_spec(spec, "field '" + part + "' has no extents part");
    DType dtype;
    if (!dtype_from_name(rest.substr(0, colon2), dtype)) {
      bad_spec(spec, "unknown dtype '" + rest.substr(0, colon2) + "'");
    }
    std::vector<Extent> extents;
    const std::string ext = rest.substr(colon2 + 1);
    if (!ext.empty()) {
      for (const std::string& e : split(ext, ',')) {
        const bool variable = e.rfind("<=", 0) == 0;
        std::uint64_t v = 0;
        if (!parse_uint(variable ? e.substr(2) : e, v)) bad_spec(spec, "bad extent '" + e + "'");
        extents.emplace_back(v, variable);
      }
    }
    out.field(name, dtype, std::move(extents));
  }
  return out;
}

// ---- records ----------------------------------------------------------------------------------

Shape FieldRecord::initial_shape() const {
  std::array<std::uint64_t, layout::kMaxDims> s{};
  for (std::size_t d = 0; d < ndim && d < s.size(); ++d) s[d] = variable(d) ? 0 : max_shape[d];
  return Shape(s.data(), std::min<std::size_t>(ndim, layout::kMaxDims));
}

Shape FieldRecord::max_shape_of() const {
  return Shape(max_shape.data(), std::min<std::size_t>(ndim, layout::kMaxDims));
}

bool operator==(const FieldRecord& a, const FieldRecord& b) noexcept {
  return a.name == b.name && a.dtype == b.dtype && a.ndim == b.ndim &&
         a.variable_mask == b.variable_mask && a.alias == b.alias && a.max_shape == b.max_shape &&
         a.offset == b.offset && a.max_nbytes == b.max_nbytes;
}

bool operator==(const Geometry& a, const Geometry& b) noexcept {
  return a.request_fields == b.request_fields && a.reply_fields == b.reply_fields &&
         a.request_area_offset == b.request_area_offset &&
         a.request_area_size == b.request_area_size && a.reply_area_offset == b.reply_area_offset &&
         a.reply_area_size == b.reply_area_size;
}

namespace {

Schema schema_of(const std::vector<FieldRecord>& records, const std::vector<FieldRecord>& request) {
  Schema s;
  for (const FieldRecord& r : records) {
    if (r.alias) {
      s.inplace(r.name, request.at(r.alias - 1).name);
      continue;
    }
    std::vector<Extent> extents;
    for (std::size_t d = 0; d < r.ndim; ++d) extents.emplace_back(r.max_shape[d], r.variable(d));
    s.field(r.name, r.dtype_value(), std::move(extents));
  }
  return s;
}

}  // namespace

Schema SchemaLayout::request_schema() const { return schema_of(request, request); }
Schema SchemaLayout::reply_schema() const { return schema_of(reply, request); }

// ---- declaration checks C1-C9 (R-SCHEMA-3) ------------------------------------------------------

bool is_valid_field_name(const std::string& name) noexcept {
  if (name.empty() || name.size() > layout_v2::kNameMaxLength) return false;
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  if (!alpha(name[0])) return false;
  return std::all_of(name.begin() + 1, name.end(),
                     [&](char c) { return alpha(c) || (c >= '0' && c <= '9'); });
}

namespace {

const char* side_name(bool reply) { return reply ? "reply" : "request"; }

// max_nbytes of an own-storage field, exactly; false above 2^64 - 1 (C8).
bool max_nbytes_of(const FieldDecl& f, std::uint64_t& out) {
  std::vector<std::uint64_t> dims;
  for (const Extent& e : f.extents) dims.push_back(e.value);
  std::uint64_t n = 0;
  return Shape(dims).element_count(n) && !detail::mul_overflow(n, itemsize(f.dtype), &out);
}

// C1-C8 on one schema. `request` is the declared request schema (C4's target must exist), or
// nullptr for an attacher's expectation (R-SCHEMA-10).
void check_schema(const Schema& s, bool reply, const Schema* request) {
  const std::string side = side_name(reply);
  if (s.size() > kMaxFields) {  // C1
    raise(ErrorCode::INVALID_ARGUMENT, "a " + side + " schema of at most 16 fields",
          std::to_string(s.size()) + " fields", "split the message or drop fields");
  }
  std::vector<std::string> targets;
  for (std::size_t k = 0; k < s.size(); ++k) {
    const FieldDecl& f = s.fields()[k];
    const std::string where = side + " field " + std::to_string(k);
    if (!is_valid_field_name(f.name)) {  // C2
      raise_field(ErrorCode::INVALID_ARGUMENT, f.name,
                  "a " + where + " name of 1 to 31 characters matching [A-Za-z_][A-Za-z0-9_]*",
                  "'" + f.name + "'", "rename the field");
    }
    for (std::size_t j = 0; j < k; ++j) {  // C3
      if (s.fields()[j].name == f.name) {
        raise_field(
            ErrorCode::INVALID_ARGUMENT, f.name, "field names unique in the " + side + " schema",
            "'" + f.name + "' at positions " + std::to_string(j) + " and " + std::to_string(k),
            "rename one of them");
      }
    }
    if (f.is_inplace()) {  // C4
      const std::string& t = *f.inplace;
      if (!reply) {
        raise_field(ErrorCode::INVALID_ARGUMENT, f.name, "in-place fields in the reply schema only",
                    "an in-place request field", "declare the field with a dtype and a shape");
      }
      if (request && !request->find(t)) {
        raise_field(ErrorCode::INVALID_ARGUMENT, f.name,
                    "an in-place target among the request "
                    "fields",
                    "target '" + t + "', which the request schema does not have",
                    "name a request field as the target");
      }
      if (std::find(targets.begin(), targets.end(), t) != targets.end()) {
        raise_field(ErrorCode::INVALID_ARGUMENT, f.name,
                    "at most one reply field in place onto each request field",
                    "a second reply field in place onto '" + t + "'",
                    "give one of them its own storage");
      }
      targets.push_back(t);
      continue;
    }
    if (!is_dtype_code(static_cast<std::uint32_t>(f.dtype))) {  // C5
      raise_field(ErrorCode::DTYPE_MISMATCH, f.name, "a dtype of spec/dtypes.json",
                  "dtype code " + std::to_string(static_cast<std::uint32_t>(f.dtype)),
                  "use one of the 14 dtypes");
    }
    if (f.extents.size() > layout::kMaxDims) {  // C6
      raise_field(ErrorCode::SHAPE_MISMATCH, f.name, "at most 8 dimensions",
                  std::to_string(f.extents.size()) + " dimensions", "reshape the field");
    }
    // C7: every extent is a std::uint64_t, 0 to 2^64 - 1 by its type.
    std::uint64_t bytes = 0;
    if (!max_nbytes_of(f, bytes)) {  // C8
      raise_field(ErrorCode::CAPACITY_EXCEEDED, f.name, "a maximum byte size below 2^64",
                  "an overflowing product of extents and itemsize", "declare smaller maxima");
    }
  }
}

FieldRecord record_of(const FieldDecl& f, const std::vector<FieldRecord>& request) {
  FieldRecord r;
  r.name = f.name;
  if (f.is_inplace()) {  // R-SCHEMA-4: takes everything from its target
    for (std::size_t k = 0; k < request.size(); ++k) {
      if (request[k].name != *f.inplace) continue;
      r = request[k];
      r.name = f.name;
      r.alias = static_cast<std::uint32_t>(k + 1);
    }
    return r;
  }
  r.dtype = static_cast<std::uint32_t>(f.dtype);
  r.ndim = static_cast<std::uint32_t>(f.extents.size());
  for (std::size_t d = 0; d < f.extents.size(); ++d) {
    r.max_shape[d] = f.extents[d].value;
    if (f.extents[d].variable) r.variable_mask |= 1u << d;
  }
  max_nbytes_of(f, r.max_nbytes);
  return r;
}

}  // namespace

void check_expected_schemas(const Schema* request, const Schema* reply) {
  if (request) check_schema(*request, false, nullptr);
  if (reply) check_schema(*reply, true, nullptr);
}

SchemaLayout declare_schemas(const Schema& request, const Schema& reply) {
  check_schema(request, false, nullptr);
  check_schema(reply, true, &request);
  SchemaLayout out;
  for (const FieldDecl& f : request.fields()) out.request.push_back(record_of(f, out.request));
  for (const FieldDecl& f : reply.fields()) out.reply.push_back(record_of(f, out.request));
  const detail::Placement p = detail::place(out.request, out.reply);
  if (!p.segment_size.fits()) {  // C9
    raise(ErrorCode::CAPACITY_EXCEEDED, "a segment size below 2^64",
          "request and reply areas whose sum overflows 64 bits", "declare smaller maxima");
  }
  for (std::size_t k = 0; k < out.request.size(); ++k) out.request[k].offset = p.request[k].lo;
  for (std::size_t k = 0; k < out.reply.size(); ++k) out.reply[k].offset = p.reply[k].lo;
  out.header_size = static_cast<std::uint32_t>(p.header_size);
  out.geometry.request_fields = static_cast<std::uint32_t>(out.request.size());
  out.geometry.reply_fields = static_cast<std::uint32_t>(out.reply.size());
  out.geometry.request_area_offset = p.header_size;
  out.geometry.request_area_size = p.request_area_size.lo;
  out.geometry.reply_area_offset = p.reply_area_offset.lo;
  out.geometry.reply_area_size = p.reply_area_size.lo;
  out.capacity = p.capacity.lo;
  out.segment_size = p.segment_size.lo;
  return out;
}

}  // namespace shmbridge
