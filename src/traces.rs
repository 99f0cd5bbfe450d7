//! `[tracing]` onto the runtime's trace builders: the collector as an upstream of its own, the
//! sampler, and the exporter's batches and queue. The exporter starts once, with the process:
//! a reload that changes `[tracing]` takes effect at the next start.

use std::time::Duration;

use protogate::trace::{ExportStats, OtlpBuilder, OtlpExporter, Sampler, Tracer};

use crate::config::{self, TracingSection};

/// `[tracing]`, checked: what starts the exporter.
#[derive(Clone, Debug)]
pub struct TracingPlan {
    builder: OtlpBuilder,
    sampler: Sampler,
    section: TracingSection,
}

/// Checks `[tracing]` and builds its collector upstream; a mistake names its key, under
/// `tracing.`.
pub fn plan(section: &TracingSection) -> Result<TracingPlan, (String, String)> {
    let key = |part: &str| format!("tracing.{part}");
    if section.endpoint.is_empty() {
        return Err((
            key("endpoint"),
            "give the collector's OTLP/gRPC endpoint, as http://host:4317".to_owned(),
        ));
    }
    let ratio = section.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&ratio) {
        return Err((
            key("sample_ratio"),
            format!("a ratio is 0 to 1, not {ratio}"),
        ));
    }
    let settings = config::UpstreamSettings {
        endpoints: vec![section.endpoint.clone()],
        tls: section.tls.clone(),
        ..Default::default()
    };
    // The collector is not a served upstream: its calls stay out of the upstream metrics.
    let upstream = crate::upstream::build("otlp", &settings, None).map_err(|(part, message)| {
        let part = if part == "endpoints" {
            "endpoint"
        } else {
            part
        };
        (key(part), message)
    })?;
    if section.tls.is_some() && !section.endpoint.starts_with("https://") {
        return Err((
            key("tls"),
            "TLS settings need an https:// endpoint".to_owned(),
        ));
    }
    let mut builder = OtlpExporter::builder(upstream);
    if let Some(name) = &section.service_name {
        builder = builder.service_name(name.clone());
    }
    if let Some(size) = section.batch_size {
        builder = builder.batch_size(size.get());
    }
    if let Some(interval) = section.batch_interval {
        builder = builder.interval(interval.0);
    }
    if let Some(size) = section.queue_size {
        builder = builder.queue_size(size.get());
    }
    if let Some(timeout) = section.export_timeout {
        builder = builder.export_timeout(timeout.0);
    }
    Ok(TracingPlan {
        builder,
        sampler: Sampler::ratio(ratio),
        section: section.clone(),
    })
}

impl TracingPlan {
    /// Starts the exporter (a thread of its own) and the tracer that feeds it.
    pub fn start(&self) -> std::io::Result<Traces> {
        let exporter = self.builder.clone().start()?;
        let tracer = Tracer::new(self.sampler, &exporter);
        Ok(Traces { exporter, tracer })
    }

    /// The section it was made from, to tell a reload that changes it.
    pub fn section(&self) -> &TracingSection {
        &self.section
    }
}

/// The running exporter and its tracer.
#[derive(Debug)]
pub struct Traces {
    exporter: OtlpExporter,
    tracer: Tracer,
}

impl Traces {
    /// The tracer requests are traced with.
    pub fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    /// What the exporter has done so far: spans exported, dropped (queue full), failed.
    pub fn stats(&self) -> ExportStats {
        self.exporter.stats()
    }

    /// Counts the exporter's spans into `metrics`, read at each scrape:
    /// `protogate_trace_spans_{exported,dropped,failed}_total`.
    pub fn count_into(&self, metrics: &protogate::observe::Metrics) {
        /// A counter's name, its help, and how it reads the exporter's counts.
        type Counted = (&'static str, &'static str, fn(ExportStats) -> u64);
        let counters: [Counted; 3] = [
            (
                "trace_spans_exported",
                "Spans the OTLP collector took",
                |stats| stats.exported,
            ),
            (
                "trace_spans_dropped",
                "Spans dropped because the export queue was full",
                |stats| stats.dropped,
            ),
            (
                "trace_spans_failed",
                "Spans whose export failed or that the collector rejected",
                |stats| stats.failed,
            ),
        ];
        for (name, help, read) in counters {
            let counts = self.exporter.counts();
            metrics.polled_counter(name, help, move || read(counts.get()));
        }
    }

    /// Exports what is queued (for at most `timeout`) and stops.
    pub fn shut_down(self, timeout: Duration) -> ExportStats {
        self.exporter.shutdown(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(endpoint: &str) -> TracingSection {
        TracingSection {
            endpoint: endpoint.to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn mistakes_name_their_key() {
        let error = |section: TracingSection| plan(&section).expect_err("a mistake");
        assert_eq!(error(section("")).0, "tracing.endpoint");
        let (key, message) = error(section("ftp://collector:4317"));
        assert_eq!(key, "tracing.endpoint");
        assert!(message.contains("http://"), "{message}");
        let (key, message) = error(TracingSection {
            sample_ratio: Some(1.5),
            ..section("http://127.0.0.1:4317")
        });
        assert_eq!(key, "tracing.sample_ratio");
        assert!(message.contains("1.5"), "{message}");
        let (key, _) = error(TracingSection {
            tls: Some(config::Tls::default()),
            ..section("http://127.0.0.1:4317")
        });
        assert_eq!(key, "tracing.tls");
    }

    #[test]
    fn a_valid_section_plans_its_sampler() {
        let planned = plan(&TracingSection {
            sample_ratio: Some(0.25),
            ..section("http://127.0.0.1:4317")
        })
        .expect("valid");
        assert_eq!(planned.sampler.probability(), 0.25);
        let planned = plan(&section("http://127.0.0.1:4317")).expect("valid");
        assert_eq!(
            planned.sampler.probability(),
            1.0,
            "every new trace by default"
        );
    }
}
