# hokusai_auth: PGXS build.  `make`, `make install`, `make installcheck`.
EXTENSION = hokusai_auth
MODULE_big = hokusai_auth
EXTVERSION = 1.0

OBJS = \
	src/hokusai_auth.o \
	src/guc.o \
	src/auth/actor.o \
	src/auth/api_key_service.o \
	src/middleware/auth.o \
	src/middleware/ip_check.o

DATA = $(wildcard sql/$(EXTENSION)--*.sql)
PGFILEDESC = "hokusai_auth - API key management"

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter
SHLIB_LINK = -lsodium

# Regression suites: sql/<name>.sql against expected/<name>.out, on a
# throwaway instance with the library preloaded.
REGRESS = install keys validate bad_input audit migration
REGRESS_OPTS = --temp-instance=$(CURDIR)/tmp_check_regress \
	--temp-config=$(srcdir)/test/regress.conf

TAP_TESTS = 1
# PGXS's prove_installcheck looks in t/; ours live in test/t/.
PROVE_TESTS = $(wildcard test/t/*.pl)
EXTRA_CLEAN = tmp_check_regress tmp_check results regression.diffs regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
