package tracing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Exporters accepted by Config.Exporter.
const (
	ExporterStdout = "stdout"
	ExporterOTLP   = "otlp"
)

// Config selects how spans are exported (the CLI maps config.Telemetry onto it).
type Config struct {
	// Enabled turns tracing on; when false Setup installs nothing.
	Enabled bool
	// ServiceName is the service.name resource attribute (default "tasker-go").
	ServiceName string
	// Exporter is ExporterStdout (default) or ExporterOTLP (OTLP over HTTP).
	Exporter string
	// Endpoint is the OTLP/HTTP collector URL, e.g. http://collector:4318. Empty: the exporter's
	// default (OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318).
	Endpoint string
	// Writer receives the stdout exporter's JSON (default os.Stdout).
	Writer io.Writer
}

// Setup builds a tracer provider from cfg, installs it as this package's default and as the
// OpenTelemetry global (with the W3C trace context and baggage propagators, so handlers using
// otel.Tracer continue the step's trace), and returns a shutdown function that flushes pending
// spans and uninstalls it. With cfg.Enabled false it installs nothing and returns a no-op.
func Setup(ctx context.Context, cfg Config) (shutdown func(context.Context) error, err error) {
	if !cfg.Enabled {
		SetDefault(nil)
		return func(context.Context) error { return nil }, nil
	}
	var exp sdktrace.SpanExporter
	switch cfg.Exporter {
	case "", ExporterStdout:
		w := cfg.Writer
		if w == nil {
			w = os.Stdout
		}
		exp, err = stdouttrace.New(stdouttrace.WithWriter(w))
	case ExporterOTLP:
		var opts []otlptracehttp.Option
		if cfg.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(cfg.Endpoint))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("tracing: unknown exporter %q (want %s or %s)", cfg.Exporter, ExporterStdout, ExporterOTLP)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: %s exporter: %w", cfg.Exporter, err)
	}
	name := cfg.ServiceName
	if name == "" {
		name = "tasker-go"
	}
	res, err := sdkresource.Merge(sdkresource.Default(), sdkresource.NewSchemaless(attribute.String("service.name", name)))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	SetDefault(New(tp))
	return func(ctx context.Context) error {
		SetDefault(nil)
		return errors.Join(tp.ForceFlush(ctx), tp.Shutdown(ctx))
	}, nil
}
