/* codes.c: strings for result codes (tally_results.h) and error codes (tally_errors.h). */
#include "tally_errors.h"
#include "tally_results.h"

#include <string.h>

const char *tally_result_str(uint32_t code)
{
    switch (code) {
#define TALLY_RESULT_STR_(name, value, recorded, message)                                         \
    case value:                                                                                   \
        return message;
        TALLY_RESULTS(TALLY_RESULT_STR_)
#undef TALLY_RESULT_STR_
    }
    return "unknown result";
}

const char *tally_result_name(uint32_t code)
{
    switch (code) {
#define TALLY_RESULT_NAME_(name, value, recorded, message)                                        \
    case value:                                                                                   \
        return #name;
        TALLY_RESULTS(TALLY_RESULT_NAME_)
#undef TALLY_RESULT_NAME_
    }
    return NULL;
}

bool tally_result_parse(const char *name, uint32_t *code)
{
#define TALLY_RESULT_PARSE_(n, value, recorded, message)                                          \
    if (strcmp(name, #n) == 0) {                                                                  \
        *code = value;                                                                            \
        return true;                                                                              \
    }
    TALLY_RESULTS(TALLY_RESULT_PARSE_)
#undef TALLY_RESULT_PARSE_
    return false;
}

bool tally_result_recorded(uint32_t code)
{
    switch (code) {
#define TALLY_RESULT_REC_(name, value, recorded, message)                                         \
    case value:                                                                                   \
        return recorded;
        TALLY_RESULTS(TALLY_RESULT_REC_)
#undef TALLY_RESULT_REC_
    }
    return false;
}

const char *tally_strerror(int rc)
{
    if (rc == 0)
        return "success";
    switch (rc) {
#define TALLY_ERROR_STR_(name, value, message)                                                    \
    case value:                                                                                   \
        return message;
        TALLY_ERRORS(TALLY_ERROR_STR_)
#undef TALLY_ERROR_STR_
    }
    if (rc < 0 && rc > -4096)
        return strerror(-rc);
    return "unknown error";
}
