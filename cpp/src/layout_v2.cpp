#include "shmbridge/layout_v2.hpp"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "exact_math.hpp"
#include "placement.hpp"
#include "shmbridge/errors.hpp"

namespace shmbridge {

using namespace layout;
using namespace layout_v2;
using detail::Wide;

// ---- encoding -----------------------------------------------------------------------------------

bool operator==(const HeaderV2& a, const HeaderV2& b) noexcept {
  return static_cast<const FixedHeader&>(a) == static_cast<const FixedHeader&>(b) &&
         a.geometry == b.geometry && a.request == b.request && a.reply == b.reply;
}

HeaderV2 HeaderV2::fresh(const SchemaLayout& s) {
  HeaderV2 h;
  h.header_size = s.header_size;
  h.capacity = s.capacity;
  h.segment_size = s.segment_size;
  h.geometry = s.geometry;
  h.request = s.request;
  h.reply = s.reply;
  return h;
}

SchemaLayout HeaderV2::schemas() const {
  SchemaLayout s;
  s.request = request;
  s.reply = reply;
  s.geometry = geometry;
  s.header_size = header_size;
  s.capacity = capacity;
  s.segment_size = segment_size;
  return s;
}

namespace {

void encode_record(const FieldRecord& r, std::uint8_t* out) {
  std::memcpy(out + kRecName, r.name.data(), std::min(r.name.size(), kNameSize));
  store_u32(out + kRecDType, r.dtype);
  store_u32(out + kRecNdim, r.ndim);
  store_u32(out + kRecVariableMask, r.variable_mask);
  store_u32(out + kRecAlias, r.alias);
  for (std::size_t d = 0; d < kMaxDims; ++d) store_u64(out + kRecMaxShape + 8 * d, r.max_shape[d]);
  store_u64(out + kRecOffset, r.offset);
  store_u64(out + kRecMaxNbytes, r.max_nbytes);
}

}  // namespace

void encode_header_v2(const HeaderV2& h, std::uint8_t* out) {
  const std::size_t records = h.request.size() + h.reply.size();
  std::memset(out, 0, kFixedHeaderSize + kRecordSize * records);
  encode_fixed_header(h, out);
  std::uint8_t* g = out + kOffGeometry;
  store_u32(g + kGeoRequestFields, h.geometry.request_fields);
  store_u32(g + kGeoReplyFields, h.geometry.reply_fields);
  store_u64(g + kGeoRequestAreaOffset, h.geometry.request_area_offset);
  store_u64(g + kGeoRequestAreaSize, h.geometry.request_area_size);
  store_u64(g + kGeoReplyAreaOffset, h.geometry.reply_area_offset);
  store_u64(g + kGeoReplyAreaSize, h.geometry.reply_area_size);
  std::size_t i = 0;
  for (const auto* side : {&h.request, &h.reply}) {
    for (const FieldRecord& r : *side) encode_record(r, out + kOffSchemaTable + kRecordSize * i++);
  }
}

// ---- validation (R-SCHEMA-9)
// ----------------------------------------------------------------------

namespace {

[[noreturn]] void corrupt(const char* check, const std::string& expected,
                          const std::string& found) {
  raise(ErrorCode::CORRUPT_HEADER, expected + " (" + check + ")", found,
        "the segment was not written by a shmbridge v2 peer or is damaged; remove it and restart "
        "the creator");
}

std::string hex(std::uint64_t v) {
  std::ostringstream s;
  s << "0x" << std::hex << v;
  return s.str();
}

// H1-H3, common to both versions (vectors decisions D1, D2, D16).
void check_magic(const std::uint8_t* data, std::uint64_t mapping_size) {
  if (mapping_size < kFixedHeaderSize) {
    corrupt("H1", "an OS object of at least 512 bytes", std::to_string(mapping_size) + " bytes");
  }
  static const std::array<std::uint8_t, 8> zero{};
  if (std::memcmp(data + kOffMagic, zero.data(), 8) == 0) {
    raise(ErrorCode::SEGMENT_NOT_FOUND, "magic SHMBRIDG", "all-zero magic (still initialising)",
          "start the creator, or wait until it has finished creating the segment");
  }
  if (std::memcmp(data + kOffMagic, kMagic.data(), 8) != 0) {
    corrupt("H3", "magic SHMBRIDG", "other bytes at offset 0");
  }
}

void check_little_endian_host() {
  if (!host_is_little_endian()) {
    raise(ErrorCode::VERSION_MISMATCH, "a little-endian host", "a big-endian host",
          "shmbridge runs on little-endian hosts only");
  }
}

// F1-F9 on record `index` of the schema table (side `reply`); `pos` places own-storage fields.
FieldRecord check_record(const std::uint8_t* data, std::size_t index, bool reply,
                         const std::vector<FieldRecord>& request,
                         const std::vector<FieldRecord>& same, std::uint32_t request_fields,
                         detail::AreaPlacer& pos) {
  const std::uint8_t* p = data + kOffSchemaTable + kRecordSize * index;
  const std::string which = std::string(reply ? "reply" : "request") + " record " +
                            std::to_string(reply ? index - request_fields : index);
  const std::uint8_t* name = p + kRecName;
  const auto* nul = static_cast<const std::uint8_t*>(std::memchr(name, 0, kNameSize));
  FieldRecord r;
  if (nul) r.name.assign(reinterpret_cast<const char*>(name), static_cast<std::size_t>(nul - name));
  const bool padded = nul && std::all_of(nul, name + kNameSize, [](std::uint8_t b) { return !b; });
  if (!nul || !padded || !is_valid_field_name(r.name)) {  // F1
    corrupt("F1", which + " name: 1 to 31 characters of [A-Za-z_][A-Za-z0-9_]*, NUL-padded",
            "other bytes");
  }
  for (const FieldRecord& e : same) {  // F2
    if (e.name == r.name)
      corrupt("F2", which + " name unique in its schema", "'" + r.name + "' twice");
  }
  r.dtype = load_u32(p + kRecDType);
  if (!is_dtype_code(r.dtype)) corrupt("F3", which + " dtype code 1..14", std::to_string(r.dtype));
  r.ndim = load_u32(p + kRecNdim);
  if (r.ndim > kMaxDims) corrupt("F4", which + " ndim <= 8", std::to_string(r.ndim));
  for (std::size_t d = 0; d < kMaxDims; ++d) r.max_shape[d] = load_u64(p + kRecMaxShape + 8 * d);
  for (std::size_t d = r.ndim; d < kMaxDims; ++d) {
    if (r.max_shape[d]) {
      corrupt("F5", which + " max_shape[" + std::to_string(d) + "] = 0 (beyond ndim)",
              std::to_string(r.max_shape[d]));
    }
  }
  r.variable_mask = load_u32(p + kRecVariableMask);
  if (r.variable_mask >> r.ndim) {
    corrupt("F6", which + " variable_mask bits below ndim " + std::to_string(r.ndim),
            hex(r.variable_mask));
  }
  r.max_nbytes = load_u64(p + kRecMaxNbytes);
  std::uint64_t n = 0, bytes = 0;
  if (!r.max_shape_of().element_count(n) ||
      detail::mul_overflow(n, itemsize(r.dtype_value()), &bytes) || bytes != r.max_nbytes) {
    corrupt("F7", which + " max_nbytes = itemsize x product(max_shape)",
            std::to_string(r.max_nbytes));
  }
  r.alias = load_u32(p + kRecAlias);
  if (r.alias) {  // F8
    const bool in_range = reply && r.alias <= request_fields;
    const bool reused = std::any_of(same.begin(), same.end(),
                                    [&](const FieldRecord& e) { return e.alias == r.alias; });
    const FieldRecord* t = in_range ? &request[r.alias - 1] : nullptr;
    if (!t || reused || t->dtype != r.dtype || t->ndim != r.ndim || t->max_shape != r.max_shape ||
        t->variable_mask != r.variable_mask) {
      corrupt("F8",
              which + (reply ? " alias 0, or k + 1 onto an untargeted request field of the same "
                               "dtype and shape"
                             : " alias 0 (request records are never in place)"),
              "alias " + std::to_string(r.alias));
    }
  }
  r.offset = load_u64(p + kRecOffset);
  const Wide expected = r.alias ? Wide::of(request[r.alias - 1].offset) : pos.own(r.max_nbytes);
  if (!expected.equals(r.offset)) {  // F9
    corrupt("F9",
            which + " offset by R-SCHEMA-7 " +
                (expected.fits() ? std::to_string(expected.lo) : std::string(">= 2^64")),
            std::to_string(r.offset));
  }
  return r;
}

}  // namespace

HeaderV2 validate_header_v2(const std::uint8_t* data, std::uint64_t mapping_size) {
  check_magic(data, mapping_size);  // H1-H3
  HeaderV2 h;
  h.version_major = load_u16(data + kOffVersionMajor);
  if (h.version_major != layout_v2::kVersionMajor) {  // H4
    raise(ErrorCode::VERSION_MISMATCH, "protocol version_major 2",
          "version_major " + std::to_string(h.version_major),
          "use peers built for the same protocol major version");
  }
  check_little_endian_host();
  const std::uint8_t* g = data + kOffGeometry;
  Geometry& geo = h.geometry;
  geo.request_fields = load_u32(g + kGeoRequestFields);
  geo.reply_fields = load_u32(g + kGeoReplyFields);
  if (geo.request_fields > kMaxFields || geo.reply_fields > kMaxFields) {  // H5
    corrupt("H5", "request_fields and reply_fields <= 16",
            std::to_string(geo.request_fields) + " and " + std::to_string(geo.reply_fields));
  }
  h.header_size = load_u32(data + kOffHeaderSize);
  const std::uint64_t header_size = detail::header_size_for(geo.request_fields, geo.reply_fields);
  if (h.header_size != header_size) {  // H6
    corrupt("H6", "header_size " + std::to_string(header_size) + " for these field counts",
            std::to_string(h.header_size));
  }
  h.max_dims = load_u32(data + kOffMaxDims);
  if (h.max_dims != kMaxDims) corrupt("H7", "max_dims 8", std::to_string(h.max_dims));
  h.flags = load_u32(data + kOffFlags);
  if (h.flags != 0) corrupt("H8", "flags 0", hex(h.flags));
  h.capacity = load_u64(data + kOffCapacity);
  h.segment_size = load_u64(data + kOffSegmentSize);
  if (!(Wide::of(h.header_size) + h.capacity).equals(h.segment_size)) {  // H9
    corrupt("H9", "segment_size = header_size + capacity",
            std::to_string(h.segment_size) + " with header_size " + std::to_string(h.header_size) +
                " and capacity " + std::to_string(h.capacity));
  }
  if (mapping_size < h.segment_size) {  // H10
    corrupt("H10",
            "an OS object of at least segment_size " + std::to_string(h.segment_size) + " bytes",
            std::to_string(mapping_size) + " bytes");
  }
  // H11: from here on the schema table (below header_size <= mapping_size) may be read.
  detail::AreaPlacer req(Wide::of(h.header_size), geo.request_fields);
  for (std::uint32_t k = 0; k < geo.request_fields; ++k) {
    h.request.push_back(
        check_record(data, k, false, h.request, h.request, geo.request_fields, req));
  }
  const Wide reply_area = Wide::of(h.header_size) + req.size();
  detail::AreaPlacer rep(reply_area, geo.reply_fields);
  for (std::uint32_t j = 0; j < geo.reply_fields; ++j) {
    h.reply.push_back(check_record(data, geo.request_fields + j, true, h.request, h.reply,
                                   geo.request_fields, rep));
  }
  geo.request_area_offset = load_u64(g + kGeoRequestAreaOffset);
  geo.request_area_size = load_u64(g + kGeoRequestAreaSize);
  geo.reply_area_offset = load_u64(g + kGeoReplyAreaOffset);
  geo.reply_area_size = load_u64(g + kGeoReplyAreaSize);
  auto area = [](const char* check, const char* what, Wide want, std::uint64_t found) {
    if (!want.equals(found)) {
      corrupt(check,
              std::string(what) + " " +
                  (want.fits() ? std::to_string(want.lo) : std::string(">= 2^64")),
              std::to_string(found));
    }
  };
  area("H12", "request_area_offset = header_size", Wide::of(h.header_size),
       geo.request_area_offset);
  area("H13", "request_area_size by R-SCHEMA-7", req.size(), geo.request_area_size);
  area("H14", "reply_area_offset = request_area_offset + request_area_size",
       Wide::of(geo.request_area_offset) + geo.request_area_size, geo.reply_area_offset);
  area("H15", "reply_area_size by R-SCHEMA-7", rep.size(), geo.reply_area_size);
  area("H16", "capacity = request_area_size + reply_area_size",
       Wide::of(geo.request_area_size) + geo.reply_area_size, h.capacity);
  // The fields validated above, and those judged elsewhere (reply_code, the word: R-STATE-11;
  // the slots: R-LIVE-1) or read as they are (version_minor, R-VER-2).
  static_cast<FixedHeader&>(h) = decode_fixed_header(data);
  return h;
}

void validate_header_for_api(const std::uint8_t* data, std::uint64_t mapping_size, int api_major,
                             const std::string& name) {
  check_magic(data, mapping_size);
  const int major = load_u16(data + kOffVersionMajor);
  if (major == api_major) {
    if (major == 1) {
      validate_header(data, mapping_size);
    } else {
      validate_header_v2(data, mapping_size);
    }
    return;
  }
  if (api_major == 1 && major == 2) {  // R-VER-3
    throw Error(ErrorCode::VERSION_MISMATCH, "segment '" + name +
                                                 "' uses protocol v2 (typed messages): attach with "
                                                 "MessageRequester/MessageResponder");
  }
  if (api_major == 2 && major == 1) {  // R-VER-4
    throw Error(ErrorCode::VERSION_MISMATCH, "segment '" + name +
                                                 "' uses protocol v1 (one array): attach with "
                                                 "Requester/Responder");
  }
  raise(ErrorCode::VERSION_MISMATCH, "protocol version_major 1 or 2 (the versions supported)",
        "version_major " + std::to_string(major) + " in segment '" + name + "'",
        "use a shmbridge library that supports that version");
}

void validate_any_header(const std::uint8_t* data, std::uint64_t mapping_size) {
  check_magic(data, mapping_size);
  if (load_u16(data + kOffVersionMajor) == layout_v2::kVersionMajor) {
    validate_header_v2(data, mapping_size);
  } else {
    validate_header(data, mapping_size);  // VERSION_MISMATCH for any version but 1
  }
}

// ---- attach expectations (R-SCHEMA-10)
// --------------------------------------------------------------

namespace {

void check_expected_side(const std::vector<FieldRecord>& found, const Schema& expected,
                         const std::vector<FieldRecord>& request, const char* side) {
  const auto& exp = expected.fields();
  const std::size_t n = std::max(exp.size(), found.size());
  for (std::size_t i = 0; i < n; ++i) {  // X1: names and count first
    const std::string* e = i < exp.size() ? &exp[i].name : nullptr;
    const std::string* s = i < found.size() ? &found[i].name : nullptr;
    if (e && s && *e == *s) continue;
    raise_field(ErrorCode::SCHEMA_MISMATCH, e ? *e : *s,
                e ? "'" + *e + "' at position " + std::to_string(i) + " of the " + side + " schema"
                  : std::string("no field at position ") + std::to_string(i) + " of the " + side +
                        " schema",
                s ? "'" + *s + "'" : std::string("no field"),
                "attach with the creator's schema (names, order and count)");
  }
  for (std::size_t i = 0; i < exp.size(); ++i) {
    const FieldDecl& f = exp[i];
    const FieldRecord& r = found[i];
    const std::string todo = "attach with the creator's schema";
    if (f.is_inplace()) {  // X6 (X2-X5 are skipped for an expected in-place field)
      if (!r.alias || request[r.alias - 1].name != *f.inplace) {
        raise_field(ErrorCode::SCHEMA_MISMATCH, f.name,
                    "in place onto request field '" + *f.inplace + "'",
                    r.alias ? "in place onto '" + request[r.alias - 1].name + "'"
                            : std::string("a field with its own storage"),
                    todo);
      }
      continue;
    }
    if (static_cast<std::uint32_t>(f.dtype) != r.dtype) {  // X2
      raise_field(ErrorCode::DTYPE_MISMATCH, f.name, std::string("dtype ") + dtype_name(f.dtype),
                  std::string("dtype ") + dtype_name(r.dtype_value()) + " in the segment", todo);
    }
    if (f.extents.size() != r.ndim) {  // X3
      raise_field(ErrorCode::SHAPE_MISMATCH, f.name, std::to_string(f.extents.size()) + " dims",
                  std::to_string(r.ndim) + " dims in the segment", todo);
    }
    for (std::size_t d = 0; d < r.ndim; ++d) {  // X4
      if (f.extents[d].value != r.max_shape[d]) {
        raise_field(ErrorCode::SHAPE_MISMATCH, f.name,
                    "extent or maximum " + std::to_string(f.extents[d].value) + " in dimension " +
                        std::to_string(d),
                    std::to_string(r.max_shape[d]) + " in the segment", todo);
      }
    }
    for (std::size_t d = 0; d < r.ndim; ++d) {  // X5
      if (f.extents[d].variable != r.variable(d)) {
        raise_field(ErrorCode::SHAPE_MISMATCH, f.name,
                    std::string(f.extents[d].variable ? "a variable" : "a fixed") +
                        " extent in dimension " + std::to_string(d),
                    std::string(r.variable(d) ? "a variable" : "a fixed") + " one in the segment",
                    todo);
      }
    }
    if (r.alias) {  // X6
      raise_field(ErrorCode::SCHEMA_MISMATCH, f.name, "a field with its own storage",
                  "in place onto '" + request[r.alias - 1].name + "' in the segment", todo);
    }
  }
}

}  // namespace

void check_expectations(const SchemaLayout& segment, const Schema* request, const Schema* reply) {
  if (request) check_expected_side(segment.request, *request, segment.request, "request");
  if (reply) check_expected_side(segment.reply, *reply, segment.request, "reply");
}

}  // namespace shmbridge
