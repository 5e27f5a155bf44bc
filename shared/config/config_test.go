package config

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

type spec struct {
	Port int    `envconfig:"CFGTEST_PORT" default:"8081" desc:"the port"`
	Name string `envconfig:"CFGTEST_NAME" default:"syndic" desc:"a name"`
	Common
}

func TestEmptyMeansUnset(t *testing.T) {
	t.Setenv("CFGTEST_NAME", "")
	t.Setenv("CFGTEST_PORT", "9000")
	t.Setenv("LOG_LEVEL", "")
	var s spec
	if err := Load("x", nil, &bytes.Buffer{}, &s); err != nil {
		t.Fatal(err)
	}
	if s.Name != "syndic" || s.Port != 9000 || s.LogLevel != "info" {
		t.Errorf("got %+v, want the defaults for the empty variables", s)
	}
}

func TestBadValueNamesTheVariable(t *testing.T) {
	t.Setenv("CFGTEST_PORT", "eighty")
	var s spec
	err := Load("x", nil, &bytes.Buffer{}, &s)
	if err == nil || !strings.Contains(err.Error(), "CFGTEST_PORT") {
		t.Fatalf("err = %v, want one naming CFGTEST_PORT", err)
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	var s spec
	if err := Load("x", []string{"-h"}, &out, &s); !errors.Is(err, ErrHelp) {
		t.Fatalf("err = %v, want ErrHelp", err)
	}
	for _, v := range []string{"CFGTEST_PORT", "CFGTEST_NAME", "BASE_URL", "LOG_LEVEL", "API_TOKEN", "UI_USER", "UI_PASSWORD", "8081", "the port"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("usage lacks %q:\n%s", v, out.String())
		}
	}
	if err := Load("x", []string{"-port=1"}, &out, &s); err == nil {
		t.Error("an unknown flag was accepted")
	}
}

func TestCommonValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []Common{
		{BaseURL: "ftp://x", LogLevel: "info"},
		{BaseURL: "contacts.example.org", LogLevel: "info"},
		{LogLevel: "loud"},
		{LogLevel: "info", UIUser: "a:b"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v validated", c)
		}
	}
	if err := (Common{BaseURL: "https://contacts.example.org/", LogLevel: "debug"}).Validate(); err != nil {
		t.Error(err)
	}
	if err := ValidateDatabaseURL("mysql://x"); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("mysql URL: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	var s struct {
		Port int           `default:"8081"`
		Name string        `default:"syndic"`
		Wait time.Duration `default:"25s"`
		Set  int           `default:"5"`
		Common
	}
	s.Set = 7
	if err := Defaults(&s); err != nil {
		t.Fatal(err)
	}
	if s.Port != 8081 || s.Name != "syndic" || s.Wait != 25*time.Second || s.Set != 7 || s.LogLevel != "info" || s.UIUser != "admin" {
		t.Errorf("got %+v", s)
	}
}

func TestTestTagsWin(t *testing.T) {
	var cfg struct {
		Retry   time.Duration `default:"1s" test:"10ms"`
		Workers int           `default:"4"`
		Name    string        `default:"x" test:"y"`
		Set     time.Duration `default:"1s" test:"10ms"`
		Common
	}
	cfg.Set = time.Minute
	if err := DefaultsForTests(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Retry != 10*time.Millisecond || cfg.Workers != 4 || cfg.Name != "y" || cfg.Set != time.Minute || cfg.LogLevel != "error" {
		t.Fatalf("DefaultsForTests gave %+v", cfg)
	}
	if err := Defaults(&cfg.Common); err != nil || cfg.LogLevel != "error" {
		t.Fatalf("Defaults over a set field: %v %q", err, cfg.LogLevel)
	}
}
