package main

import "context"

const synHot = 1000

func (h *harness) synScenario(ctx context.Context, runs int) []synRow { return nil }
func (rp *report) markdown(svg string) string                         { return rp.table() }
