/// libm entry points for the pure Swift core, which imports neither Foundation nor Glibc so
/// that it also compiles as Embedded Swift.
#ifndef HEARTH_MATH_H
#define HEARTH_MATH_H
#ifdef __cplusplus
extern "C" {
#endif
float hearth_expf(float x);
float hearth_logf(float x);
double hearth_exp(double x);
double hearth_log(double x);
double hearth_log1p(double x);
double hearth_expm1(double x);
double hearth_sqrt(double x);
double hearth_erfc(double x);
double hearth_lgamma(double x);

#ifdef __cplusplus
}
#endif
#endif
