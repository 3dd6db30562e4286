# ctest packaging_consumer: install the built project to a fresh prefix, then configure, build and
# run tests/consumer against it. Variables: BUILD_DIR, CONFIG, CONSUMER_DIR, WORK_DIR, GENERATOR,
# CXX, EXPECTED_VERSION.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  message(STATUS "${what}: ok")
endfunction()

set(config_args)
if(CONFIG)
  set(config_args --config ${CONFIG})
endif()
run("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix} ${config_args})
if(NOT EXISTS ${prefix}/include/shmbridge/shmbridge.hpp)
  message(FATAL_ERROR "the install has no include/shmbridge/shmbridge.hpp")
endif()
file(GLOB_RECURSE configs ${prefix}/*/shmbridgeConfig.cmake)
if(NOT configs)
  message(FATAL_ERROR "the install has no shmbridgeConfig.cmake")
endif()
run("configure consumer" ${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${WORK_DIR}/build -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=Release
    -DEXPECTED_VERSION=${EXPECTED_VERSION})
run("build consumer" ${CMAKE_COMMAND} --build ${WORK_DIR}/build ${config_args})
file(GLOB_RECURSE exe ${WORK_DIR}/build/consumer ${WORK_DIR}/build/consumer.exe)
list(FILTER exe EXCLUDE REGEX "CMakeFiles")
if(NOT exe)
  message(FATAL_ERROR "consumer executable not found under ${WORK_DIR}/build")
endif()
list(GET exe 0 exe)
run("run consumer" ${exe})
