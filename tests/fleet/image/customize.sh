#!/bin/sh
# mmdebstrap customize hook for the test-host image: $1 is the new root.
set -eu
root="$1"

# A fresh machine-id per container, written by systemd at first boot.
: > "$root/etc/machine-id"
mkdir -p "$root/var/lib/dbus"
ln -sf /etc/machine-id "$root/var/lib/dbus/machine-id"

# SSH host keys are made at first boot, so no two hosts share them.
rm -f "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/systemd/system/ssh.service.d"
cat > "$root/etc/systemd/system/ssh.service.d/host-keys.conf" <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
cat > "$root/etc/ssh/sshd_config.d/test-host.conf" <<'CONF'
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
CONF

# systemd leaves mount propagation private inside a container; a real host has "/"
# shared, and systemd's credentials (LoadCredential=) only appear when it is.
cat > "$root/etc/systemd/system/make-rshared.service" <<'UNIT'
[Unit]
Description=Shared mount propagation, as on a real host
DefaultDependencies=no
Before=local-fs.target

[Service]
Type=oneshot
ExecStart=/bin/mount --make-rshared /

[Install]
WantedBy=local-fs.target
UNIT
mkdir -p "$root/etc/systemd/system/local-fs.target.wants"
ln -sf ../make-rshared.service "$root/etc/systemd/system/local-fs.target.wants/make-rshared.service"

# Units that make no sense in a container, or that would take the apt lock
# in the middle of a test.
for unit in apt-daily.timer apt-daily-upgrade.timer getty@tty1.service \
    console-getty.service systemd-remount-fs.service e2scrub_all.timer \
    fstrim.timer; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done

# The login user of the test inventory: key only, passwordless sudo.
chroot "$root" useradd --create-home --shell /bin/bash --user-group ops
echo 'ops ALL=(ALL) NOPASSWD: ALL' > "$root/etc/sudoers.d/ops"
chmod 0440 "$root/etc/sudoers.d/ops"
mkdir -p "$root/home/ops/.ssh"
chmod 0700 "$root/home/ops/.ssh"
chroot "$root" chown ops:ops /home/ops/.ssh

# Trust the build machine's extra CA certificates: outbound TLS may be inspected.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null
fi

# SLURM and munge stay off until a SLURM test fleet configures them (one munge key per
# fleet, made by its fixture). The cluster's user: the same uid on every host, no sudo.
for unit in munge.service slurmd.service slurmctld.service; do
  rm -f "$root/etc/systemd/system/multi-user.target.wants/$unit"
done
rm -f "$root/etc/munge/munge.key"
chroot "$root" useradd --create-home --shell /bin/bash --uid 2000 --user-group researcher
mkdir -p "$root/home/researcher/.ssh"
chmod 0700 "$root/home/researcher/.ssh"
chroot "$root" chown researcher:researcher /home/researcher/.ssh
