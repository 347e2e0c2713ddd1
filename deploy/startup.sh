#!/usr/bin/env bash
# Startup script of the pull subscriber's VMs (Debian 12, Python 3.11), run as root at every boot:
# fetch the code named in the instance metadata from Cloud Storage, install its pinned
# requirements into a venv, and run `python -m clickstream.subscribers.pull` under systemd as an unprivileged
# user. systemd restarts the process if it exits; the managed instance group recreates the VM if
# /healthz stops answering 200 (see deploy/subscribers.py). New code: upload a new archive, then
# `gcloud compute instance-groups managed rolling-action replace clickstream-pull --region=R`.
set -euo pipefail

METADATA=http://metadata.google.internal/computeMetadata/v1
metadata() { curl --fail --silent --show-error -H "Metadata-Flavor: Google" "$METADATA/$1"; }

PROJECT="$(metadata project/project-id)"
SOURCE="$(metadata instance/attributes/clickstream-source)"
SUBSCRIPTION="$(metadata instance/attributes/clickstream-subscription)"
DATASET="$(metadata instance/attributes/clickstream-dataset)"
HEALTH_PORT="$(metadata instance/attributes/clickstream-health-port)"
HOME_DIR=/opt/clickstream

apt-get update -qq
apt-get install -y -qq python3-venv
id clickstream >/dev/null 2>&1 ||
  useradd --system --home-dir "$HOME_DIR" --shell /usr/sbin/nologin clickstream

rm -rf "$HOME_DIR/app" && mkdir -p "$HOME_DIR/app"
gcloud storage cp "$SOURCE" "$HOME_DIR/source.tar.gz"
tar -xzf "$HOME_DIR/source.tar.gz" -C "$HOME_DIR/app"
python3 -m venv "$HOME_DIR/venv"
"$HOME_DIR/venv/bin/pip" install --quiet --disable-pip-version-check -r "$HOME_DIR/app/requirements.txt"
chown -R clickstream: "$HOME_DIR"

cat >/etc/systemd/system/clickstream-pull.service <<EOF
[Unit]
Description=clickstream pull subscriber ($SUBSCRIPTION into $DATASET)
After=network-online.target
Wants=network-online.target

[Service]
User=clickstream
WorkingDirectory=$HOME_DIR/app
Environment=PYTHONPATH=$HOME_DIR/app
ExecStart=$HOME_DIR/venv/bin/python -m clickstream.subscribers.pull --project $PROJECT \
  --subscription $SUBSCRIPTION --dataset $DATASET --health-host 0.0.0.0 --health-port $HEALTH_PORT
# SIGTERM drains (write and ack what was received); a batch write takes 30 s at most.
KillSignal=SIGTERM
TimeoutStopSec=90
Restart=always
RestartSec=5
# Logs to the journal and the serial console (gcloud compute instances get-serial-port-output).
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload
systemctl enable clickstream-pull
systemctl restart clickstream-pull
