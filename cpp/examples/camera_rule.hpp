// The camera example's frames and detection rule, shared by camera_requester and
// camera_responder. The rule is written down in cpp/examples/README.md ("The camera exchange");
// python/examples/camera_responder.py is its Python twin: change all three together.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace camera {

constexpr std::uint64_t kHeight = 480, kWidth = 640, kChannels = 3, kMaxBoxes = 100;

inline void fill_frame(std::vector<std::uint8_t>& image, long round) {
  std::size_t at = 0;
  for (std::uint64_t y = 0; y < kHeight; ++y) {
    for (std::uint64_t x = 0; x < kWidth; ++x) {
      for (std::uint64_t c = 0; c < kChannels; ++c) {
        image[at++] = static_cast<std::uint8_t>(
            (x + 2 * y + 3 * c + 7 * static_cast<std::uint64_t>(round)) % 256);
      }
    }
  }
}

// The detection rule (cpp/examples/README.md), in the pieces camera_responder.py has:
// S = frame_sum(image), n = count(S), the rows by write_detections; detect() for a requester.
// `image` is the (480, 640, 3) frame in C order.
inline std::uint64_t frame_sum(const std::uint8_t* image) {
  std::uint64_t sum = 0;
  for (std::uint64_t k = 0; k < kHeight * kWidth * kChannels; ++k) sum += image[k];
  return sum;
}

inline std::uint64_t count(std::uint64_t sum) { return sum % (kMaxBoxes + 1); }

// Fills `n` rows of 6 floats: row i is [i, image[i mod 480, 7i mod 640, i mod 3],
// (S mod 1000 + i) mod 1000, i / 2, float(stamp), n].
inline void write_detections(float* rows, std::uint64_t n, const std::uint8_t* image, double stamp,
                             std::uint64_t sum) {
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t pixel = ((i % kHeight) * kWidth + (7 * i) % kWidth) * kChannels + i % 3;
    float* row = &rows[i * 6];
    row[0] = static_cast<float>(i);
    row[1] = static_cast<float>(image[pixel]);
    row[2] = static_cast<float>((sum % 1000 + i) % 1000);
    row[3] = static_cast<float>(i) / 2.0f;
    row[4] = static_cast<float>(stamp);  // round to nearest, as numpy's float32 assignment
    row[5] = static_cast<float>(n);
  }
}

// The detections of one frame, n x 6 floats (what the requester compares the reply with).
inline std::vector<float> detect(const std::uint8_t* image, double stamp) {
  const std::uint64_t sum = frame_sum(image), n = count(sum);
  std::vector<float> boxes(n * 6);
  write_detections(boxes.data(), n, image, stamp, sum);
  return boxes;
}

}  // namespace camera
