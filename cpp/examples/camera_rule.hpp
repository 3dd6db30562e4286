// The camera example's data and detection rule (see camera_requester.cpp's header comment and
// cpp/examples/README.md), shared by camera_requester and camera_responder.
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

// The detection rule: n = S mod 101 rows of 6 float32 values (camera_requester.cpp).
// `image` is the (480, 640, 3) frame in C order.
inline std::vector<float> detections(const std::uint8_t* image, double stamp) {
  std::uint64_t sum = 0;
  for (std::uint64_t k = 0; k < kHeight * kWidth * kChannels; ++k) sum += image[k];
  const std::uint64_t n = sum % (kMaxBoxes + 1);
  std::vector<float> boxes(n * 6);
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t pixel = ((i % kHeight) * kWidth + (7 * i) % kWidth) * kChannels + i % 3;
    float* row = &boxes[i * 6];
    row[0] = static_cast<float>(i);
    row[1] = static_cast<float>(image[pixel]);
    row[2] = static_cast<float>((sum % 1000 + i) % 1000);
    row[3] = static_cast<float>(i) / 2.0f;
    row[4] = static_cast<float>(stamp);
    row[5] = static_cast<float>(n);
  }
  return boxes;
}

}  // namespace camera
