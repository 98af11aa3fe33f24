//! upstream-sim (in progress)
