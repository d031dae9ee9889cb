# Writes OUT: the bytes of IN as the C array NAME (NUL-terminated) and its
# length NAME_len, so the controller binary carries the file with it (as
# embed_sql.cmake does for sql/).
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" nhex)
math(EXPR len "${nhex} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
get_filename_component(src ${IN} NAME)
set(body "/* Generated from ${src} at build time. Do not edit. */\n#include <stddef.h>\n\n")
string(APPEND body "const char ${NAME}[] = {${bytes} 0};\nconst size_t ${NAME}_len = ${len};\n")
file(WRITE ${OUT}.tmp "${body}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
