//go:build race

package auditlog

const raceEnabled = true
