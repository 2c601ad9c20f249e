//go:build !race

package banlist

const raceEnabled = false
