// The ORIGINAL design (shared/seed, "C++ 与 Python 共享内存通信系统"), re-implemented faithfully
// as the baseline of the benchmarks: a plain 0/1/0/2 status word polled with sleep(10 ms) on
// both sides, the payload copied in and out every round, a fresh result vector per read.
//
//   bench_original --name N [--rounds R] [--warmup W] [--rows 512] [--cols 512]
//
// Creates the segment (64-byte metadata block, status int at offset 0, then rows*cols float32),
// prints "READY", and runs W + R rounds of write() + read() against bench/original/original.py,
// timing each round with steady_clock. Prints one JSON line.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t kMetadataSize = 64;

struct Header {
  std::atomic<int> status;  // 0: empty, 1: C++ wrote, 2: Python wrote
  int ndim;
  int shape[2];
};

class SharedMemory {
 public:
  SharedMemory(const std::string& name, std::size_t rows, std::size_t cols)
      : name_("/" + name), data_size_(rows * cols * sizeof(float)) {
    shm_unlink(name_.c_str());
    int fd = shm_open(name_.c_str(), O_CREAT | O_RDWR, 0600);
    if (fd < 0 || ftruncate(fd, static_cast<off_t>(kMetadataSize + data_size_)) != 0) {
      std::perror("shm_open/ftruncate");
      std::exit(1);
    }
    base_ = mmap(nullptr, kMetadataSize + data_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (base_ == MAP_FAILED) {
      std::perror("mmap");
      std::exit(1);
    }
    header_ = static_cast<Header*>(base_);
    header_->status.store(0);
    header_->ndim = 2;
    header_->shape[0] = static_cast<int>(rows);
    header_->shape[1] = static_cast<int>(cols);
    array_ = static_cast<char*>(base_) + kMetadataSize;
  }
  ~SharedMemory() {
    munmap(base_, kMetadataSize + data_size_);
    shm_unlink(name_.c_str());
  }

  // As in the seed: wait (sleeping 10 ms) for Python to empty the memory, copy in, status 1.
  void write(const std::vector<float>& data) {
    while (header_->status.load() != 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::memcpy(array_, data.data(), data_size_);
    header_->status.store(1);
  }

  // As in the seed: wait (sleeping 10 ms) for Python's result, copy out into a new vector,
  // status 0.
  std::vector<float> read() {
    while (header_->status.load() != 2) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::vector<float> result(data_size_ / sizeof(float));
    std::memcpy(result.data(), array_, data_size_);
    header_->status.store(0);
    return result;
  }

 private:
  std::string name_;
  std::size_t data_size_;
  void* base_ = nullptr;
  Header* header_ = nullptr;
  char* array_ = nullptr;
};

std::string opt(int argc, char** argv, const char* key, const char* def) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], key) == 0) return argv[i + 1];
  }
  return def;
}

}  // namespace

int main(int argc, char** argv) {
  using Clock = std::chrono::steady_clock;
  const std::string name = opt(argc, argv, "--name", "SimpleShm");
  const long rounds = std::strtol(opt(argc, argv, "--rounds", "50").c_str(), nullptr, 10);
  const long warmup = std::strtol(opt(argc, argv, "--warmup", "3").c_str(), nullptr, 10);
  const std::size_t rows = std::strtoull(opt(argc, argv, "--rows", "512").c_str(), nullptr, 10);
  const std::size_t cols = std::strtoull(opt(argc, argv, "--cols", "512").c_str(), nullptr, 10);
  SharedMemory shm(name, rows, cols);
  std::printf("READY\n");
  std::fflush(stdout);
  std::vector<long long> samples;
  long bad = 0;
  for (long r = -warmup; r < rounds; ++r) {
    // As in the seed: a (512, 512) array, initial value 1e-6, incremented by 1 every loop.
    std::vector<float> data(rows * cols, 1e-6f + static_cast<float>(r + warmup));
    const auto t0 = Clock::now();
    shm.write(data);
    std::vector<float> result = shm.read();
    const auto t1 = Clock::now();
    if (result[0] != data[0] + 1.0f) ++bad;
    if (r >= 0) {
      samples.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    }
  }
  std::printf("{\"lang\":\"cpp\",\"role\":\"original_requester\",\"bytes\":%zu,\"rounds\":%ld,"
              "\"errors\":%ld,\"samples_ns\":[",
              rows * cols * sizeof(float), rounds, bad);
  for (std::size_t i = 0; i < samples.size(); ++i) std::printf(i ? ",%lld" : "%lld", samples[i]);
  std::printf("]}\n");
  return bad ? 1 : 0;
}
