// The deterministic geometry of R-SCHEMA-7, in exact arithmetic: used by the creator to place the
// fields (schema.cpp) and by the header validator to check every stored offset and size against it
// (layout_v2.cpp, F9 and H12-H16). Internal to the library.
#pragma once

#include <cstdint>
#include <vector>

#include "exact_math.hpp"
#include "shmbridge/schema.hpp"

namespace shmbridge::detail {

// place(area_offset, schema) of R-SCHEMA-7, one field at a time: the message table first, then
// each own-storage field at the next multiple of 64 after the previous one's end.
class AreaPlacer {
 public:
  AreaPlacer(Wide area_offset, std::size_t fields) noexcept
      : start_(area_offset),
        pos_(align64(area_offset + Wide::of(layout_v2::kEntrySize * fields))) {}
  // The offset of the next own-storage field; moves past its storage.
  Wide own(std::uint64_t max_nbytes) noexcept {
    const Wide at = pos_;
    pos_ = align64(pos_ + max_nbytes);
    return at;
  }
  Wide size() const noexcept { return pos_ - start_; }

 private:
  Wide start_;
  Wide pos_;
};

inline std::uint64_t header_size_for(std::size_t request_fields, std::size_t reply_fields) {
  return layout_v2::kFixedHeaderSize + layout_v2::kRecordSize * (request_fields + reply_fields);
}

// Offsets (by field, schema order) and sizes of both areas for records whose `alias` and
// `max_nbytes` are set; an in-place field has its target's offset.
struct Placement {
  std::uint64_t header_size = 0;
  std::vector<Wide> request, reply;
  Wide request_area_size, reply_area_offset, reply_area_size, capacity, segment_size;
};

inline Placement place(const std::vector<FieldRecord>& request,
                       const std::vector<FieldRecord>& reply) {
  Placement p;
  p.header_size = header_size_for(request.size(), reply.size());
  AreaPlacer req(Wide::of(p.header_size), request.size());
  for (const FieldRecord& r : request) p.request.push_back(req.own(r.max_nbytes));
  p.request_area_size = req.size();
  p.reply_area_offset = Wide::of(p.header_size) + p.request_area_size;
  AreaPlacer rep(p.reply_area_offset, reply.size());
  for (const FieldRecord& r : reply) {
    p.reply.push_back(r.alias ? p.request.at(r.alias - 1) : rep.own(r.max_nbytes));
  }
  p.reply_area_size = rep.size();
  p.capacity = p.request_area_size + p.reply_area_size;
  p.segment_size = Wide::of(p.header_size) + p.capacity;
  return p;
}

}  // namespace shmbridge::detail
