# hokusai_auth: PGXS build.  `make`, `make install`, `make installcheck`.
EXTENSION = hokusai_auth
MODULE_big = hokusai_auth
EXTVERSION = 1.6

OBJS = \
	src/hokusai_auth.o \
	src/guc.o \
	src/shmem.o \
	src/common/cidr.o \
	src/common/crc32.o \
	src/common/forwarded.o \
	src/common/id_hash.o \
	src/common/key_format.o \
	src/common/text.o \
	src/events/event_queue.o \
	src/events/events_sql.o \
	src/events/outbox.o \
	src/keys/actor.o \
	src/keys/bcrypt.o \
	src/keys/generate.o \
	src/keys/keys_sql.o \
	src/validate/cache.o \
	src/validate/cache_lookup.o \
	src/validate/call_scan.o \
	src/validate/cidr_datum.o \
	src/validate/invalidate.o \
	src/validate/key_store.o \
	src/validate/pipeline.o \
	src/validate/row.o \
	src/validate/scopes.o \
	src/validate/stats.o \
	src/validate/throttle.o \
	src/validate/validate_sql.o \
	src/ratelimit/admit.o \
	src/ratelimit/limiter.o \
	src/ratelimit/ratelimit_sql.o \
	src/ratelimit/replay_sql.o \
	src/ratelimit/window.o \
	src/metering/balance.o \
	src/metering/credits.o \
	src/metering/credits_scan.o \
	src/metering/credits_sql.o \
	src/metering/credits_xact.o \
	src/http/caller.o \
	src/replica/inval_log.o \
	src/replica/promoted.o \
	src/replica/receive.o \
	src/replica/ship.o \
	src/replica/ship_events.o \
	src/replica/ship_state.o \
	src/replica/walinval.o \
	src/replica/xidsnap.o \
	src/http/client_ip.o \
	src/http/postgrest.o \
	src/http/pre_request.o \
	src/http/route_scopes.o \
	src/usage/endpoint.o \
	src/usage/histogram.o \
	src/usage/partition.o \
	src/usage/track.o \
	src/usage/usage_queue.o \
	src/usage/usage_sql.o \
	src/usage/uuid7.o \
	src/worker/credits_writer.o \
	src/worker/events_step.o \
	src/worker/aggregate.o \
	src/worker/flush.o \
	src/worker/housekeeping.o \
	src/worker/locks.o \
	src/worker/partitions.o \
	src/worker/trust.o \
	src/worker/usage_writer.o \
	src/worker/worker.o

# A fresh install runs sql/hokusai_auth--$(EXTVERSION).sql, built from the
# topical sources in sql/install/ (in load order).  The 1.0 script and the
# update scripts are frozen as shipped: databases installed at an earlier
# version walk them with ALTER EXTENSION ... UPDATE.
INSTALL_SQL = $(addprefix sql/install/, schema.sql keys.sql audit.sql cache.sql \
	ratelimit.sql authorization.sql metering.sql usage.sql http.sql events.sql \
	roles.sql backups.sql)
DATA = sql/$(EXTENSION)--1.0.sql $(wildcard sql/$(EXTENSION)--*--*.sql)
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql
PGFILEDESC = "hokusai_auth - API key management"

# libpq: a standby's worker ships usage to the primary (src/replica/ship.c).
PG_CPPFLAGS = -I$(srcdir)/src -I$(libpq_srcdir)
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter
SHLIB_LINK = -lsodium -lpq

# Regression suites: sql/<name>.sql against expected/<name>.out, on a
# throwaway instance with the library preloaded.
REGRESS = install keys validate call_scan bad_input audit cache ratelimit metering client_ip usage privileges migration pre_request events authorization trust
REGRESS_OPTS = --temp-instance=$(CURDIR)/tmp_check_regress \
	--temp-config=$(srcdir)/test/regress.conf

ISOLATION = revoke_race events_order disable_race metering_race metering_limits_race metering_events
ISOLATION_OPTS = --inputdir=$(srcdir)/test/isolation \
	--outputdir=$(CURDIR)/output_iso \
	--temp-instance=$(CURDIR)/tmp_check_iso \
	--temp-config=$(srcdir)/test/regress.conf

TAP_TESTS = 1
# PGXS's prove_installcheck looks in t/; ours live in test/t/.
PROVE_TESTS = $(wildcard test/t/*.pl)
EXTRA_CLEAN = tmp_check_regress tmp_check_iso tmp_check results output_iso \
	regression.diffs regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# After PGXS, so that its "all" stays the default goal.
sql/$(EXTENSION)--$(EXTVERSION).sql: $(INSTALL_SQL)
	cat $^ > $@

# PGXS tracks no header dependencies (PostgreSQL built without
# --enable-depend, as Debian's is): every object, and its JIT bitcode,
# depends on every header of ours, so that a changed struct never meets an
# object compiled against its old layout.
HK_HEADERS = $(wildcard $(srcdir)/src/*.h $(srcdir)/src/*/*.h)
$(OBJS): $(HK_HEADERS)
ifeq ($(with_llvm), yes)
$(OBJS:.o=.bc): $(HK_HEADERS)
endif

# Set after PGXS, which resets it.
PROVE_FLAGS = -I $(srcdir)/test/perl

# The three kinds of test one at a time (installcheck runs them all).
.PHONY: installcheck-regress installcheck-isolation installcheck-tap
# PGXS's commands first echo "+++ regress install-check in $(subdir) +++",
# and subdir is empty outside PostgreSQL's tree: name this tree there.
installcheck-regress installcheck-isolation installcheck-tap: subdir = $(CURDIR)
installcheck-regress:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)
installcheck-isolation:
	$(if $(ISOLATION),$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) $(ISOLATION),@echo "no isolation specs")
installcheck-tap:
	$(prove_installcheck)

# The hokusai command-line tool (src/bin/hokusai), built and installed with the extension.
all: hokusai-cli
hokusai-cli:
	$(MAKE) -C src/bin/hokusai
install: install-cli
install-cli: hokusai-cli
	$(MAKE) -C src/bin/hokusai install
uninstall: uninstall-cli
uninstall-cli:
	$(MAKE) -C src/bin/hokusai uninstall
clean: clean-cli
clean-cli:
	$(MAKE) -C src/bin/hokusai clean
.PHONY: hokusai-cli install-cli uninstall-cli clean-cli
