package config

import (
	"fmt"
	"reflect"
	"strconv"
	"time"
)

// Defaults sets each zero field of the struct spec points to (embedded
// structs included) to its `default` tag, the value the environment would
// have given it. Code that builds a Config itself — tests, chiefly — sets
// what it cares about and takes the rest from here.
func Defaults(spec any) error {
	v := reflect.ValueOf(spec)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config.Defaults: want a pointer to a struct, not %T", spec)
	}
	return defaults(v.Elem(), "default")
}

// DefaultsForTests is Defaults for tests: a field's `test` tag, where it has
// one, wins over its `default` tag. The tags say, beside each variable,
// what tests shorten (retry delays, breaker timings) or quieten (logs).
func DefaultsForTests(spec any) error {
	v := reflect.ValueOf(spec)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config.DefaultsForTests: want a pointer to a struct, not %T", spec)
	}
	return defaults(v.Elem(), "test", "default")
}

// defaults sets each zero field of v to the first of its tags present.
func defaults(v reflect.Value, tags ...string) error {
	t := v.Type()
	for i := range t.NumField() {
		f, sf := v.Field(i), t.Field(i)
		if !sf.IsExported() || sf.Tag.Get("ignored") == "true" {
			continue
		}
		if sf.Anonymous && f.Kind() == reflect.Struct {
			if err := defaults(f, tags...); err != nil {
				return err
			}
			continue
		}
		var def string
		ok := false
		for _, tag := range tags {
			if def, ok = sf.Tag.Lookup(tag); ok {
				break
			}
		}
		if !ok || !f.IsZero() {
			continue
		}
		switch {
		case f.Type() == reflect.TypeFor[time.Duration]():
			d, err := time.ParseDuration(def)
			if err != nil {
				return fmt.Errorf("%s default %q: %w", sf.Name, def, err)
			}
			f.SetInt(int64(d))
		case f.Kind() == reflect.String:
			f.SetString(def)
		case f.CanInt():
			n, err := strconv.ParseInt(def, 10, 64)
			if err != nil {
				return fmt.Errorf("%s default %q: %w", sf.Name, def, err)
			}
			f.SetInt(n)
		case f.Kind() == reflect.Bool:
			b, err := strconv.ParseBool(def)
			if err != nil {
				return fmt.Errorf("%s default %q: %w", sf.Name, def, err)
			}
			f.SetBool(b)
		default:
			return fmt.Errorf("%s: no default for a %s", sf.Name, f.Type())
		}
	}
	return nil
}
