# Host build: the machine's own compiler.
CC ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif
AR ?= ar
PKG_CONFIG ?= pkg-config
TRIPLET := $(shell $(CC) -dumpmachine)
RUNNER :=
