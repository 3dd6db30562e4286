# shmbridge_set_warnings(<target>): the project's warning flags (-Wall -Wextra, -Werror when
# SHMBRIDGE_WERROR is ON).
function(shmbridge_set_warnings target)
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 $<$<BOOL:${SHMBRIDGE_WERROR}>:/WX>)
  else()
    target_compile_options(${target} PRIVATE -Wall -Wextra
                           $<$<BOOL:${SHMBRIDGE_WERROR}>:-Werror>)
  endif()
endfunction()
