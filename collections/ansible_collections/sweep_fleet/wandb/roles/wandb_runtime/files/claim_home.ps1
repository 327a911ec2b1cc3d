# sweep-fleet: make sure only Administrators and SYSTEM control the runtime directory
# (ansible.windows.win_powershell, parameter -Path).
#
# Users may create folders in C:\ProgramData, and a folder's creator owns it (CREATOR OWNER
# gets full control): a local user who made the runtime directory before the first deploy
# could swap uv.exe or nssm.exe, which then run as an administrator. So:
#  * a missing directory is created owned by Administrators, with a protected DACL of its
#    own (Administrators and SYSTEM: full control; Users: read and execute), nothing
#    inherited from ProgramData;
#  * an existing one is refused when it, or anything in it, belongs to anyone else or lets
#    anyone else write, until a person has looked at it. The entries are checked once,
#    the first time (then a marker is written, which only Administrators could write).
[CmdletBinding(SupportsShouldProcess)]
param (
    [Parameter(Mandatory)][string] $Path
)
$ErrorActionPreference = 'Stop'
$Ansible.Changed = $false

$admins = [Security.Principal.SecurityIdentifier]::new('S-1-5-32-544')
$system = [Security.Principal.SecurityIdentifier]::new('S-1-5-18')
$users = [Security.Principal.SecurityIdentifier]::new('S-1-5-32-545')
# TrustedInstaller and CREATOR OWNER (a placeholder, inherited only) are Windows' own.
$trusted = @(
    $admins.Value, $system.Value,
    'S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464', 'S-1-3-0'
)
$writeRights = [Security.AccessControl.FileSystemRights]'Write, Delete, DeleteSubdirectoriesAndFiles, ChangePermissions, TakeOwnership'
$marker = Join-Path $Path '.sweep-fleet-owned'

# Below the top, the agents' own directories are writable by their services' virtual
# accounts (NT SERVICE\wandb-agent-N, S-1-5-80-...), which no local user can be.
function Get-Problem([string] $Item, [bool] $Services = $false) {
    $acl = Get-Acl -LiteralPath $Item
    $owner = ([Security.Principal.NTAccount]$acl.Owner).Translate([Security.Principal.SecurityIdentifier]).Value
    if ($owner -notin $trusted) {
        return "$Item belongs to $($acl.Owner), not to Administrators"
    }
    foreach ($rule in $acl.Access) {
        if ($rule.AccessControlType -ne 'Allow') { continue }
        $sid = $rule.IdentityReference.Translate([Security.Principal.SecurityIdentifier]).Value
        $service = $Services -and $sid.StartsWith('S-1-5-80-')
        if ($sid -notin $trusted -and -not $service -and ($rule.FileSystemRights -band $writeRights)) {
            return "$Item lets $($rule.IdentityReference) write ($($rule.FileSystemRights))"
        }
    }
    return $null
}

if (-not (Test-Path -LiteralPath $Path)) {
    if ($PSCmdlet.ShouldProcess($Path, 'create, owned by Administrators with a protected DACL')) {
        $acl = [Security.AccessControl.DirectorySecurity]::new()
        $acl.SetOwner($admins)
        $acl.SetAccessRuleProtection($true, $false)
        $inherit = [Security.AccessControl.InheritanceFlags]'ContainerInherit, ObjectInherit'
        $none = [Security.AccessControl.PropagationFlags]::None
        foreach ($entry in @(@($admins, 'FullControl'), @($system, 'FullControl'), @($users, 'ReadAndExecute'))) {
            $acl.AddAccessRule([Security.AccessControl.FileSystemAccessRule]::new(
                    $entry[0], [Security.AccessControl.FileSystemRights]$entry[1], $inherit, $none, 'Allow'))
        }
        [IO.Directory]::CreateDirectory($Path, $acl) | Out-Null
        [IO.File]::WriteAllText($marker, 'sweep-fleet')
    }
    $Ansible.Changed = $true
    return
}

$problem = Get-Problem $Path
if (-not $problem -and -not (Test-Path -LiteralPath $marker)) {
    foreach ($item in Get-ChildItem -LiteralPath $Path -Recurse -Force -Attributes !ReparsePoint) {
        $problem = Get-Problem $item.FullName $true
        if ($problem) { break }
    }
    if (-not $problem -and $PSCmdlet.ShouldProcess($marker, 'mark as checked')) {
        [IO.File]::WriteAllText($marker, 'sweep-fleet')
        $Ansible.Changed = $true
    }
}
if ($problem) {
    throw ("$problem`: someone other than the administrators made or changed it, and could change what " +
        'the agents run as an administrator; look at it, remove it (Remove-Item -Recurse -Force), or set ' +
        'wandb_runtime_windows_home to a new directory, then deploy again')
}
