"""The devkit: the tiny default built offline (:mod:`.tiny`) and the
real-architecture stand-ins (:mod:`.standin`)."""
