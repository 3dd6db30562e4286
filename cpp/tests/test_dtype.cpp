// R-DTYPE-1: dtype codes and item sizes equal spec/dtypes.json.
#include "test_util.hpp"

using namespace shmbridge;
using namespace shmbridge::test;

// R-DTYPE-1
TEST(DType, R_DTYPE_1_TableEqualsSpecDtypesJson) {
  const auto spec = load_spec("dtypes.json");
  ASSERT_EQ(spec["dtypes"].size(), kMaxDTypeCode);
  for (const auto& row : spec["dtypes"]) {
    const auto code = row["code"].get<std::uint32_t>();
    EXPECT_TRUE(is_dtype_code(code));
    EXPECT_STREQ(dtype_name(static_cast<DType>(code)), row["name"].get<std::string>().c_str());
    EXPECT_EQ(itemsize(static_cast<DType>(code)), row["itemsize"].get<std::size_t>());
    DType parsed;
    ASSERT_TRUE(dtype_from_name(row["name"], parsed));
    EXPECT_EQ(static_cast<std::uint32_t>(parsed), code);
  }
}

// R-DTYPE-1: code 0 and codes above 14 are invalid.
TEST(DType, R_DTYPE_1_OutOfRangeCodesInvalid) {
  EXPECT_FALSE(is_dtype_code(0));
  EXPECT_FALSE(is_dtype_code(15));
  EXPECT_EQ(itemsize(static_cast<DType>(0)), 0u);
  EXPECT_EQ(itemsize(static_cast<DType>(15)), 0u);
  DType d;
  EXPECT_FALSE(dtype_from_name("float128", d));
}

// R-DTYPE-1: the C++ types map to the codes of their numpy names.
TEST(DType, R_DTYPE_1_CxxTypesMapToCodes) {
  EXPECT_EQ(dtype_of_v<float>, DType::float32);
  EXPECT_EQ(dtype_of_v<double>, DType::float64);
  EXPECT_EQ(dtype_of_v<bool>, DType::bool_);
  EXPECT_EQ(dtype_of_v<std::int64_t>, DType::int64);
  EXPECT_EQ(dtype_of_v<std::complex<float>>, DType::complex64);
  EXPECT_EQ(itemsize(dtype_of_v<std::complex<double>>), sizeof(std::complex<double>));
}
