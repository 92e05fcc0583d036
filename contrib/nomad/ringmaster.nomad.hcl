# Ringmaster on Nomad: one Ringmaster per allocation, as the container's init
# (the image from the repository's Dockerfile). Nomad places allocations,
# rolls out across clients and reschedules one whose Ringmaster exits
# non-zero; Ringmaster runs the processes inside it.
# See docs/deploy.md ("In a container, on a fleet").
#
#   nomad var put nomad/jobs/web token="$(head -c 24 /dev/urandom | base64)"
#   nomad job run contrib/nomad/ringmaster.nomad.hcl
job "web" {
  type = "service"

  update {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "10s"
    healthy_deadline = "2m"
    auto_revert      = true
  }

  group "web" {
    count = 3

    network {
      port "http" {
        to = 8080
      }
      port "ringmaster" {
        to = 9770
      }
    }

    service {
      name     = "web"
      port     = "http"
      provider = "nomad"

      # Every autostart watcher active with its processes ready.
      check {
        name     = "ready"
        type     = "http"
        port     = "ringmaster"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"
      }

      # The daemon answers; restart the task when it stops answering.
      check {
        name     = "alive"
        type     = "http"
        port     = "ringmaster"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"

        check_restart {
          limit = 3
          grace = "30s"
        }
      }
    }

    # A critical watcher failed (exit 1): restart in place twice, then let
    # the scheduler place the allocation elsewhere.
    restart {
      attempts = 2
      interval = "5m"
      delay    = "5s"
      mode     = "fail"
    }

    task "ringmaster" {
      driver = "docker"

      config {
        image = "ringmaster:latest"
        ports = ["http", "ringmaster"]
        args  = ["/local/ringmaster.toml"]
      }

      # Above shutdown_timeout (20 s): Ringmaster finishes its ordered,
      # graceful stop before Nomad's SIGKILL.
      kill_timeout = "30s"
      kill_signal  = "SIGTERM"

      template {
        destination = "secrets/token"
        perms       = "0400"
        data        = "{{ with nomadVar \"nomad/jobs/web\" }}{{ .token }}{{ end }}"
      }

      template {
        destination = "local/ringmaster.toml"
        data        = <<EOT
[ringmaster]
shutdown_timeout = "20s"
http_endpoint = "0.0.0.0:9770"
http_token_file = "/secrets/token"

[sockets.web]
host = "0.0.0.0"
port = 8080

[watchers.web]
cmd = "python3 /app/hello_worker.py --fd $(circus.sockets.web) --notify"
numprocesses = 4
use_sockets = true
graceful_timeout = "5s"
critical = true
priority = 10
ready = { type = "notify" }

[watchers.web.restart]
min_uptime = "1s"
initial_delay = "100ms"
max_delay = "10s"
max_retry = 5
EOT
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
