# Sportello: every set-up step lives here, so a fresh Debian machine (as root) needs only
# `make demo` or `make test`.

SHELL := /bin/bash
CARGO ?= cargo
# Where cargo puts the binary: ./target unless CARGO_TARGET_DIR (or a cargo config) says
# otherwise, as it does for many Rust users. Asked of cargo once, when first used (after
# `deps` has checked that cargo is there).
TARGET_DIR = $(eval TARGET_DIR := $(or $(shell $(CARGO) metadata --format-version 1 \
	--no-deps 2>/dev/null | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'),target))$(TARGET_DIR)
BIN = $(TARGET_DIR)/release/sportello
# System packages: poppler-utils reads PDFs our own parser cannot and renders pages for OCR;
# Tesseract (libtesseract + leptonica, built against through bindgen, hence clang) reads
# faxes and scans, with the Italian, English and orientation models; the CLI is the peer
# the OCR benchmarks and quality report compare against. Dovecot and OpenSMTPD are the real
# IMAP and SMTP servers the email tests start (never as system services). Chromium and its
# WebDriver run the web app's browser tests. gammu-smsd (with gammu's dummy phone driver) is
# the SMS gateway the text-message tests start. xmlsec1 seals segnature (and the tests verify
# them with it, with a certificate OpenSSL makes); xmllint checks them against AgID's schema.
# PostgreSQL is the register of offices that outgrow one machine: the tests start throwaway
# clusters of it (initdb + pg_ctl, as the postgres user), never the system service.
PKGS := poppler-utils pkg-config clang libclang-dev libtesseract-dev libleptonica-dev \
	tesseract-ocr tesseract-ocr-ita tesseract-ocr-eng tesseract-ocr-osd \
	dovecot-imapd dovecot-lmtpd opensmtpd chromium chromium-driver gammu gammu-smsd \
	xmlsec1 libxml2-utils openssl postgresql
# Only `make bench` uses these: OCRmyPDF is the peer for searchable PDFs.
BENCH_PKGS := ocrmypdf

.PHONY: all deps build demo test soak fuzz bench fixtures clean

all: build

# Installs what is missing, and nothing when all is there (so it is cheap to run every time).
deps:
	@missing=""; for p in $(PKGS) $(EXTRA_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "run as root, or install:$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo (Rust 1.89 or newer) is needed" >&2; exit 1; }

build: deps
	$(CARGO) build --release --locked

# Resets the demo store, drops the fixtures into the demo's folders, files them, shows them.
demo: build
	rm -rf sportello-data
	mkdir -p sportello-data/drop/fax sportello-data/drop/scanner
	cp fixtures/fax/* sportello-data/drop/fax/
	cp fixtures/scanner/* sportello-data/drop/scanner/
	$(BIN) run --once --pipeline pipelines/demo.toml
	$(BIN) ingest --pipeline pipelines/demo.toml fixtures/mail
	@echo; echo "== tickets"; $(BIN) tickets list
	@echo; echo "== search: allaccio (finds 'allacciamento')"; $(BIN) search allaccio
	@echo; echo "== search: citta (finds 'città')"; $(BIN) search citta
	@echo; echo "== search: camarda (a word only in the pixels of an upside-down scan: OCR)"; $(BIN) search camarda
	@echo; echo "== web app: an admin account for the demo store"
	@$(BIN) users add admin --role admin | sed 's/^/   /'
	@echo "   now run:  $(BIN) serve --pipeline pipelines/demo.toml"
	@echo "   and open http://127.0.0.1:8080 (log in as admin with the password above)"

# Every store test runs on SQLite and on PostgreSQL: here a missing PostgreSQL is a failure,
# not a skip.
test: deps
	SPORTELLO_REQUIRE_POSTGRES=1 $(CARGO) test --locked --release -- --test-threads=2

# The long kill tests: `kill -9` of the runner at random moments, 1,000 items from a folder
# over 20 rounds, and 200 from an IMAP inbox (`make test` runs 200 x 2 and 60).
soak: deps
	SPORTELLO_KILL_ITEMS=1000 SPORTELLO_KILL_ROUNDS=20 $(CARGO) test --locked --release --test kill -- --nocapture
	SPORTELLO_KILL_IMAP_ITEMS=200 $(CARGO) test --locked --release --test mail sigkill -- --nocapture

# Each fuzz target for FUZZ_SECS seconds (fuzz/run.sh prints runs, runs/s and findings).
# cargo-fuzz comes from crates.io; it passes nightly flags, which stable Rust takes with
# RUSTC_BOOTSTRAP=1; no sanitizer (`-s none`): panics, aborts, hangs and memory blow-ups are
# found, memory errors in C libraries only when they crash.
FUZZ_SECS ?= 180
fuzz: deps
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build -s none --release
	FUZZ_SECS=$(FUZZ_SECS) fuzz/run.sh

bench:
	$(MAKE) deps EXTRA_PKGS="$(BENCH_PKGS)"
	$(CARGO) build --release --locked
	$(CARGO) run --release --locked --example bench

# Rewrites fixtures/ from examples/make_fixtures.rs.
fixtures:
	$(CARGO) run --example make_fixtures

clean:
	$(CARGO) clean
	rm -rf sportello-data
