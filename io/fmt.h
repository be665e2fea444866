/* Number formatting shared by the text sinks: a float in the fewest decimal digits that read
 * back as the same float (0.13f prints "0.13", not "0.129999995"). */
#ifndef CIN_IO_FMT_H
#define CIN_IO_FMT_H

#define FMT_FLOAT_MAX 32

/* Writes the shortest round-trip form of f into buf (FMT_FLOAT_MAX bytes, C locale digits as
 * printf gives them) and returns buf. NaN and infinities print as printf prints them. */
char *fmt_float_shortest(float f, char buf[FMT_FLOAT_MAX]);

#endif
