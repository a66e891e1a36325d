#!/bin/sh
# Test images have no init system: packages must not try to start their services while installing.
exit 101
