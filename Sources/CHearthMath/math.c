/// libm entry points for the pure Swift core, which imports neither Foundation nor Glibc so
/// that it also compiles as Embedded Swift.
#define _DEFAULT_SOURCE
#include <math.h>
#include "hearth_math.h"

float hearth_expf(float x) { return expf(x); }
float hearth_logf(float x) { return logf(x); }
double hearth_exp(double x) { return exp(x); }
double hearth_log(double x) { return log(x); }
double hearth_log1p(double x) { return log1p(x); }
double hearth_expm1(double x) { return expm1(x); }
double hearth_sqrt(double x) { return sqrt(x); }
double hearth_erfc(double x) { return erfc(x); }
double hearth_lgamma(double x) {
    int sign;
    return lgamma_r(x, &sign);
}
