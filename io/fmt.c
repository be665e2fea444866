/* Shortest round-trip float printing (see fmt.h): try 1 to 9 significant digits. */
#include "fmt.h"

#include <stdio.h>
#include <stdlib.h>

char *fmt_float_shortest(float f, char buf[FMT_FLOAT_MAX])
{
    for (int digits = 1; digits < 9; digits++) {
        snprintf(buf, FMT_FLOAT_MAX, "%.*g", digits, (double)f);
        if (strtof(buf, NULL) == f)
            return buf;
    }
    snprintf(buf, FMT_FLOAT_MAX, "%.9g", (double)f);
    return buf;
}
