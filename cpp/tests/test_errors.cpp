// R-ERR-1, R-ERR-2: error names, codes and exit codes equal spec/errors.json.
#include "test_util.hpp"

using namespace shmbridge;
using namespace shmbridge::test;

// R-ERR-1
TEST(Errors, R_ERR_1_TableEqualsSpecErrorsJson) {
  const auto spec = load_spec("errors.json");
  ASSERT_EQ(spec["errors"].size(), kMaxErrorCode);
  for (const auto& row : spec["errors"]) {
    const auto code = static_cast<ErrorCode>(row["code"].get<std::uint32_t>());
    EXPECT_STREQ(error_name(code), row["name"].get<std::string>().c_str());
    EXPECT_EQ(exit_code(code), row["exit"].get<int>()) << row["name"];
    EXPECT_STREQ(error_meaning(code), row["meaning"].get<std::string>().c_str());
    ErrorCode parsed;
    ASSERT_TRUE(error_from_name(row["name"], parsed));
    EXPECT_EQ(parsed, code);
    EXPECT_TRUE(is_error_code(row["code"].get<std::uint32_t>()));
  }
}

// R-ERR-1
TEST(Errors, R_ERR_1_UnknownCodesAreRejected) {
  EXPECT_FALSE(is_error_code(0));
  EXPECT_TRUE(is_error_code(kMaxErrorCode));
  EXPECT_FALSE(is_error_code(kMaxErrorCode + 1));
  ErrorCode c;
  EXPECT_FALSE(error_from_name("NOT_AN_ERROR", c));
  EXPECT_EQ(exit_code(ErrorCode::ok), 0);
  EXPECT_EQ(exit_code(static_cast<ErrorCode>(99)), 1);
}

// R-ERR-2
TEST(Errors, R_ERR_2_ErrorCarriesCodeNameExitAndMessage) {
  try {
    raise(ErrorCode::SHAPE_MISMATCH, "shape (4,)", "shape (5,)", "reshape it");
    FAIL() << "raise returned";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::SHAPE_MISMATCH);
    EXPECT_STREQ(e.name(), "SHAPE_MISMATCH");
    EXPECT_EQ(e.exit_code(), 12);
    const std::string what = e.what();
    EXPECT_NE(what.find("SHAPE_MISMATCH"), std::string::npos) << what;
    EXPECT_NE(what.find("expected shape (4,)"), std::string::npos) << what;
    EXPECT_NE(what.find("found shape (5,)"), std::string::npos) << what;
    EXPECT_NE(what.find("reshape it"), std::string::npos) << what;
  }
}

// R-ERR-2: Error is a std::runtime_error.
TEST(Errors, R_ERR_2_IsRuntimeError) {
  EXPECT_THROW(throw Error(ErrorCode::TIMEOUT, "x"), std::runtime_error);
}
