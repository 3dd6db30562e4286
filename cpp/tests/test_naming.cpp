// R-NAME-1, R-NAME-2: segment names.
#include "test_util.hpp"

using namespace shmbridge;
using namespace shmbridge::test;

// R-NAME-1
TEST(Naming, R_NAME_1_AcceptsValidNames) {
  for (const char* n : {"SimpleShm", "a", "A_b.c-9", "x23456789012345678901234567890", "0abc"}) {
    EXPECT_TRUE(is_valid_name(n)) << n;
    EXPECT_EQ(normalize_name(n), n);
  }
}

// R-NAME-1: one leading '/' is accepted and ignored.
TEST(Naming, R_NAME_1_LeadingSlashIgnored) {
  EXPECT_EQ(normalize_name("/SimpleShm"), "SimpleShm");
  EXPECT_CODE(normalize_name("//SimpleShm"), ErrorCode::INVALID_NAME);
  EXPECT_CODE(normalize_name("/"), ErrorCode::INVALID_NAME);
}

// R-NAME-1
TEST(Naming, R_NAME_1_RejectsInvalidNames) {
  for (const char* n :
       {"", ".hidden", "-dash", "has space", "slash/inside", "x234567890123456789012345678901",
        "uni\xc3\xa9", "tab\t", "star*", "colon:"}) {
    EXPECT_FALSE(is_valid_name(n)) << n;
    EXPECT_CODE(normalize_name(n), ErrorCode::INVALID_NAME) << n;
  }
  EXPECT_FALSE(is_valid_name(std::string("nul\0x", 5)));
}

// R-NAME-1: rejected before any OS object is touched.
TEST(Naming, R_NAME_1_InvalidNameTouchesNoObject) {
  EXPECT_CODE(Requester::create("bad name", DType::float32, {4}), ErrorCode::INVALID_NAME);
  EXPECT_CODE(Responder::attach(".bad"), ErrorCode::INVALID_NAME);
  EXPECT_FALSE(std::ifstream("/dev/shm/bad name").good());
}

// R-NAME-2
TEST(Naming, R_NAME_2_OsObjectNames) {
  EXPECT_EQ(posix_shm_name("SimpleShm"), "/SimpleShm");
  EXPECT_EQ(win32_mapping_name("SimpleShm"), "Local\\SimpleShm");
  EXPECT_EQ(win32_event_name("SimpleShm", true), "Local\\SimpleShm.req");
  EXPECT_EQ(win32_event_name("SimpleShm", false), "Local\\SimpleShm.rsp");
}

// R-NAME-2: the POSIX object is shm_open("/N"), i.e. /dev/shm/N on Linux (Windows: test_win32).
#if !defined(_WIN32)
TEST(Naming, R_NAME_2_PosixObjectIsDevShmName) {
  UniqueName n("name");
  auto req = Requester::create("/" + n.str(), DType::uint8, {8});
  EXPECT_TRUE(n.exists());
  EXPECT_EQ(req.name(), n.str());
}
#endif
