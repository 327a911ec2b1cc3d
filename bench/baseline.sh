#!/usr/bin/env bash
# The hand-written baseline deploy.yml is measured against (make bench): what a careful
# person would type, over parallel ssh: the service user and directories, uv copied from
# here, a venv with the pinned wandb, the key in a root-only netrc, the code and its
# requirements, one agent unit started and enabled. No checks, no idempotence, no reports.
#
#   bench/baseline.sh INVENTORY UV_BINARY CODE_DIR BASE_URL SWEEP_PATH WANDB_VERSION < key
#
# HTTPS_PROXY, when set here, is what the hosts' uv uses to reach the package index.
# INVENTORY is the test fleet's INI file (host ansible_host=IP ansible_user=U
# ansible_ssh_private_key_file=K); the API key comes on stdin.
set -euo pipefail
inventory=$1 uv=$2 code=$3 base_url=$4 sweep=$5 wandb_version=$6
IFS= read -r key
known_hosts=$(sed -n "s/.*UserKnownHostsFile=\([^ ']*\).*/\1/p" "$inventory" | head -1)

deploy() {
  local ip=$1 user=$2 keyfile=$3
  local ssh=(ssh -i "$keyfile" -o BatchMode=yes -o StrictHostKeyChecking=accept-new
             -o UserKnownHostsFile="$known_hosts" -o ControlMaster=auto
             -o ControlPath="/tmp/baseline-%C" -o ControlPersist=60 "$user@$ip")
  scp -q -i "$keyfile" -o BatchMode=yes -o UserKnownHostsFile="$known_hosts" \
      -o ControlPath="/tmp/baseline-%C" "$uv" "$user@$ip:/tmp/uv.baseline"
  rsync -a --delete --rsync-path="sudo rsync" -e "${ssh[*]:0:${#ssh[@]}-1}" \
      --exclude .git/ --exclude wandb/ "$code/" "$user@$ip:/opt/baseline-code/"
  printf 'machine %s\n  login user\n  password %s\n' "${base_url#*://}" "$key" |
    "${ssh[@]}" "sudo install -D -m 0600 /dev/stdin /etc/sweep-fleet/netrc"
  "${ssh[@]}" sudo bash -s -- "$base_url" "$sweep" "$wandb_version" "${HTTPS_PROXY:-}" <<'REMOTE'
set -euo pipefail
base_url=$1 sweep=$2 wandb_version=$3
[ -z "$4" ] || export HTTPS_PROXY=$4
id wandb >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/sweep-fleet \
    --shell /usr/sbin/nologin wandb
install -d -m 0755 /opt/sweep-fleet
install -d -o wandb -g wandb -m 0750 /var/lib/sweep-fleet /var/lib/sweep-fleet/runs/1
install -m 0755 /tmp/uv.baseline /usr/local/bin/uv && rm -f /tmp/uv.baseline
export UV_PYTHON_DOWNLOADS=never UV_CACHE_DIR=/opt/sweep-fleet/cache/uv UV_SYSTEM_CERTS=1
[ -x /opt/sweep-fleet/venv/bin/python ] || uv venv -q --python /usr/bin/python3 /opt/sweep-fleet/venv
uv pip install -q --python /opt/sweep-fleet/venv/bin/python "wandb==$wandb_version" \
    -r /opt/baseline-code/requirements.txt
chown -R root:wandb /opt/baseline-code && chmod -R g-w,o-rwx /opt/baseline-code
printf 'WANDB_BASE_URL=%s\n' "$base_url" > /etc/sweep-fleet/wandb.env
cat > /etc/systemd/system/wandb-agent@.service <<UNIT
[Unit]
After=network-online.target
[Service]
User=wandb
WorkingDirectory=/opt/baseline-code
EnvironmentFile=/etc/sweep-fleet/wandb.env
LoadCredential=netrc:/etc/sweep-fleet/netrc
Environment=NETRC=%d/netrc WANDB_DIR=/var/lib/sweep-fleet/runs/%i
Environment=PATH=/opt/sweep-fleet/venv/bin:/usr/bin:/bin
ExecStart=/opt/sweep-fleet/venv/bin/wandb agent $sweep
KillMode=mixed
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now wandb-agent@1
REMOTE
}

pids=()
while read -r name rest; do
  [[ $name == \[* || -z $name || $rest != *ansible_host=* ]] && continue
  ip=$(sed -n 's/.*ansible_host=\([^ ]*\).*/\1/p' <<<"$rest")
  user=$(sed -n 's/.*ansible_user=\([^ ]*\).*/\1/p' <<<"$rest")
  keyfile=$(sed -n 's/.*ansible_ssh_private_key_file=\([^ ]*\).*/\1/p' <<<"$rest")
  deploy "$ip" "$user" "$keyfile" &
  pids+=($!)
done < "$inventory"
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
