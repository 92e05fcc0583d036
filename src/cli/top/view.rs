//! Draws the model on a ratatui frame: a header, the watcher table, the
//! selected watcher's processes with CPU/RSS sparklines, its log, a status
//! line and the help line. Drawing only reads the model.

use super::input::HELP;
use super::model::{History, LogKind, Model, ProcessRow};
use crate::cli::output::duration;
use crate::control::commands::stats::human;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Sparkline, Table, TableState};
use ratatui::Frame;

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

pub(crate) fn draw(frame: &mut Frame, model: &Model) {
    let area = frame.area();
    let third = (area.height / 3).max(5);
    let watchers_h = (model.watchers.len() as u16 + 3).clamp(4, third);
    let procs_h = (model.processes().len() as u16 + 3).clamp(8, third.max(8));
    let [header, watchers, middle, logs, status, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(watchers_h),
        Constraint::Length(procs_h),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, header, model);
    draw_watchers(frame, watchers, model);
    let [procs, totals] = Layout::horizontal([Constraint::Fill(1), Constraint::Length(28)]).areas(middle);
    draw_processes(frame, procs, model);
    draw_totals(frame, totals, model);
    draw_logs(frame, logs, model);
    draw_status(frame, status, model);
    draw_help(frame, help);
}

fn clock(unix: f64) -> String {
    chrono::DateTime::from_timestamp_millis((unix * 1000.0) as i64)
        .map(|t| t.with_timezone(&chrono::Local).format("%H:%M:%S").to_string())
        .unwrap_or_else(|| "--:--:--".into())
}

fn draw_header(frame: &mut Frame, area: Rect, model: &Model) {
    let updated = model.updated.map_or_else(
        || "waiting for the daemon…".to_string(),
        |t| format!("updated {}", clock(t)),
    );
    let line = Line::from(vec![
        Span::styled(
            " ringmaster top ",
            Style::new().add_modifier(Modifier::BOLD).reversed(),
        ),
        Span::raw(format!(
            "  {}  ·  {} watcher{}  ·  {updated}",
            model.endpoint,
            model.watchers.len(),
            if model.watchers.len() == 1 { "" } else { "s" }
        )),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

fn state_style(state: &str) -> Style {
    match state {
        "active" | "running" => Style::new().fg(Color::Green),
        "starting" | "stopping" | "spawning" | "backoff" => Style::new().fg(Color::Yellow),
        "failed" => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        _ => Style::new().fg(Color::DarkGray),
    }
}

fn header_row(cells: &[&'static str]) -> Row<'static> {
    Row::new(cells.iter().copied()).style(Style::new().add_modifier(Modifier::BOLD).fg(Color::Cyan))
}

fn draw_watchers(frame: &mut Frame, area: Rect, model: &Model) {
    let block = Block::bordered().title(" watchers ");
    if model.watchers.is_empty() {
        let text = if model.updated.is_some() {
            "no watchers"
        } else {
            "waiting for the daemon…"
        };
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    }
    let rows = model.watchers.iter().map(|w| {
        Row::new(vec![
            Cell::from(w.name.clone()),
            Cell::from(w.state.clone()).style(state_style(&w.state)),
            Cell::from(format!("{}/{}", w.running, w.desired)),
            Cell::from(w.ready.to_string()),
            Cell::from(w.restarts.to_string()),
            Cell::from(w.uptime.map_or("-".into(), duration)),
        ])
    });
    let name_w = model
        .watchers
        .iter()
        .map(|w| w.name.chars().count())
        .max()
        .unwrap_or(0);
    let table = Table::new(
        rows,
        [
            Constraint::Length(name_w.clamp(7, 40) as u16),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Fill(1),
        ],
    )
    .header(header_row(&[
        "WATCHER", "STATE", "PROCS", "READY", "RESTARTS", "UPTIME",
    ]))
    .block(block)
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
    .highlight_symbol("▶ ");
    let mut state = TableState::default().with_selected(model.selected_index());
    frame.render_stateful_widget(table, area, &mut state);
}

/// `values` (the last `width` of them) as block characters, scaled to `max`.
pub(crate) fn spark(values: &std::collections::VecDeque<u64>, width: usize, floor: u64) -> String {
    let skip = values.len().saturating_sub(width);
    let max = values
        .iter()
        .skip(skip)
        .copied()
        .max()
        .unwrap_or(0)
        .max(floor)
        .max(1);
    values
        .iter()
        .skip(skip)
        .map(|v| BARS[((v.saturating_mul(7) + max / 2) / max).min(7) as usize])
        .collect()
}

fn process_row<'a>(p: &ProcessRow, model: &Model, spark_w: usize) -> Row<'a> {
    let u = p.pid.map(|pid| model.usage(pid)).unwrap_or_default();
    let h = p.pid.and_then(|pid| model.history(pid));
    let (cpu_spark, rss_spark) = h.map_or_else(Default::default, |h: &History| {
        (spark(&h.cpu, spark_w, 1000), spark(&h.rss, spark_w, 1))
    });
    Row::new(vec![
        Cell::from(p.wid.to_string()),
        Cell::from(p.pid.map_or("-".into(), |p| p.to_string())),
        Cell::from(p.state.clone()).style(state_style(&p.state)),
        Cell::from(if p.ready { "yes" } else { "no" }),
        Cell::from(u.cpu.map_or("-".into(), |c| format!("{c:.1}"))),
        Cell::from(u.rss.map_or("-".into(), human)),
        Cell::from(p.uptime.map_or("-".into(), duration)),
        Cell::from(p.restarts.to_string()),
        Cell::from(cpu_spark).style(Style::new().fg(Color::Green)),
        Cell::from(rss_spark).style(Style::new().fg(Color::Magenta)),
    ])
}

fn draw_processes(frame: &mut Frame, area: Rect, model: &Model) {
    let title = match model.selected() {
        Some(w) => format!(" processes of {w} "),
        None => " processes ".into(),
    };
    let block = Block::bordered().title(title);
    let procs = model.processes();
    if procs.is_empty() {
        frame.render_widget(Paragraph::new("no processes").block(block), area);
        return;
    }
    let fixed: [u16; 8] = [4, 8, 9, 5, 6, 8, 7, 8];
    // Borders, the fixed columns, and a space between each of the ten.
    let used = 2 + fixed.iter().sum::<u16>() + 9;
    let spark_w = (area.width.saturating_sub(used) / 2).clamp(1, super::model::HISTORY as u16);
    let mut widths: Vec<Constraint> = fixed.iter().map(|w| Constraint::Length(*w)).collect();
    widths.extend([Constraint::Length(spark_w), Constraint::Length(spark_w)]);
    let rows = procs.iter().map(|p| process_row(p, model, spark_w as usize));
    let table = Table::new(rows, widths).header(header_row(&[
        "WID", "PID", "STATE", "READY", "CPU%", "RSS", "UPTIME", "RESTARTS", "CPU", "RSS",
    ]));
    frame.render_widget(table.block(block), area);
}

fn draw_totals(frame: &mut Frame, area: Rect, model: &Model) {
    let [cpu_area, rss_area] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let empty = History::default();
    let h = model.totals().unwrap_or(&empty);
    let cpu_now = h
        .cpu
        .back()
        .map_or("-".into(), |c| format!("{:.1}%", *c as f64 / 10.0));
    let rss_now = h.rss.back().map_or("-".into(), |r| human(*r));
    let width = area.width.saturating_sub(2) as usize;
    let last = |q: &std::collections::VecDeque<u64>| -> Vec<u64> {
        q.iter().skip(q.len().saturating_sub(width)).copied().collect()
    };
    let cpu = last(&h.cpu);
    let cpu_max = cpu.iter().copied().max().unwrap_or(0).max(1000);
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(format!(" CPU {cpu_now} ")))
            .data(&cpu)
            .max(cpu_max)
            .style(Style::new().fg(Color::Green)),
        cpu_area,
    );
    let rss = last(&h.rss);
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(format!(" RSS {rss_now} ")))
            .data(&rss)
            .style(Style::new().fg(Color::Magenta)),
        rss_area,
    );
}

fn draw_logs(frame: &mut Frame, area: Rect, model: &Model) {
    let title = match model.selected() {
        Some(w) => format!(" log of {w} ({}) ", model.filter.label()),
        None => " log ".into(),
    };
    let rows = area.height.saturating_sub(2) as usize;
    let mut lines: Vec<Line> = model
        .log_lines()
        .rev()
        .take(rows)
        .map(|l| {
            let (mark, style) = match l.kind {
                LogKind::Stdout => ("|", Style::new()),
                LogKind::Stderr => ("!", Style::new().fg(Color::Red)),
                LogKind::Event => ("*", Style::new().fg(Color::Cyan)),
            };
            Line::from(vec![
                Span::styled(clock(l.time), Style::new().fg(Color::DarkGray)),
                Span::raw(format!(
                    " {:>7} {mark} ",
                    l.pid.map_or(String::new(), |p| p.to_string())
                )),
                Span::styled(l.text.clone(), style),
            ])
        })
        .collect();
    lines.reverse();
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(title)), area);
}

fn draw_status(frame: &mut Frame, area: Rect, model: &Model) {
    let line = if let Some(c) = &model.confirm {
        Line::from(Span::styled(
            format!(" {} {}? y: yes, any other key: no", c.verb.command(), c.watcher),
            Style::new()
                .fg(Color::Black)
                .bg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        ))
    } else if let Some(p) = &model.problem {
        Line::from(Span::styled(format!(" {p}"), Style::new().fg(Color::Red)))
    } else if let Some(n) = &model.note {
        let style = if n.error {
            Style::new().fg(Color::Red)
        } else {
            Style::new()
        };
        Line::from(Span::styled(format!(" {}", n.text), style))
    } else {
        Line::default()
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let mut spans = Vec::new();
    for (keys, what) in HELP {
        spans.push(Span::styled(
            format!(" {keys}"),
            Style::new().add_modifier(Modifier::BOLD).fg(Color::Cyan),
        ));
        spans.push(Span::raw(format!(" {what} ")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
