"""Private helpers of :mod:`dopt_core` (namespace compat, validation, typing)."""
