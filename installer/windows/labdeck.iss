; Inno Setup 6 script for Labdeck on Windows (x64).
;
; Build the PyInstaller bundle on Windows first, then compile this script from the
; repository root:
;   py -3.11 -m venv .venv && .venv\Scripts\pip install -e ".[test]"
;   .venv\Scripts\python installer\build.py          (dist in build\pyinstaller\dist\labdeck)
;   "C:\Program Files (x86)\Inno Setup 6\ISCC.exe" installer\windows\labdeck.iss
; The installer lands in build\installer\Labdeck-<version>-setup.exe.
;
; It installs per user by default (no administrator rights needed; the dialog offers
; "for all users"), adds a Start menu entry, and offers Labdeck in "Open with" for the
; file types it can queue (.py .sh .yaml .yml .toml) without taking over their default
; program.

#define AppName "Labdeck"
#define AppVersion "0.1.0"
#define AppExe "labdeck.exe"
#define AppIdName "org.labdeck.Labdeck"
#define BundleDir "..\..\build\pyinstaller\dist\labdeck"

[Setup]
; A fixed id (uuid5 of the application id): upgrades replace the earlier install.
AppId={{0D9B0FD8-94E0-57A2-AA56-BC3C50402B87}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=The Labdeck developers
AppPublisherURL=https://labdeck.org
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\build\installer
OutputBaseFilename=Labdeck-{#AppVersion}-setup
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
UninstallDisplayIcon={app}\{#AppExe}
ChangesAssociations=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
; The whole one-dir bundle: labdeck.exe and its _internal folder.
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"; AppUserModelID: "{#AppIdName}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon; AppUserModelID: "{#AppIdName}"

[Registry]
; "Open with" without becoming the default: the application registers itself and lists the
; types it supports; each extension names it among its OpenWithProgids. HKA is HKCU for a
; per-user install and HKLM for all users.
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}"; ValueType: string; ValueName: "FriendlyAppName"; ValueData: "{#AppName}"; Flags: uninsdeletekey
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}\shell\open\command"; ValueType: string; ValueData: """{app}\{#AppExe}"" open ""%1"""
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}\SupportedTypes"; ValueType: string; ValueName: ".py"; ValueData: ""
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}\SupportedTypes"; ValueType: string; ValueName: ".sh"; ValueData: ""
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}\SupportedTypes"; ValueType: string; ValueName: ".yaml"; ValueData: ""
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}\SupportedTypes"; ValueType: string; ValueName: ".yml"; ValueData: ""
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}\SupportedTypes"; ValueType: string; ValueName: ".toml"; ValueData: ""
Root: HKA; Subkey: "Software\Classes\{#AppIdName}.script"; ValueType: string; ValueData: "Script queued with {#AppName}"; Flags: uninsdeletekey
Root: HKA; Subkey: "Software\Classes\{#AppIdName}.script\DefaultIcon"; ValueType: string; ValueData: "{app}\{#AppExe},0"
Root: HKA; Subkey: "Software\Classes\{#AppIdName}.script\shell\open\command"; ValueType: string; ValueData: """{app}\{#AppExe}"" open ""%1"""
Root: HKA; Subkey: "Software\Classes\.py\OpenWithProgids"; ValueType: string; ValueName: "{#AppIdName}.script"; ValueData: ""; Flags: uninsdeletevalue
Root: HKA; Subkey: "Software\Classes\.sh\OpenWithProgids"; ValueType: string; ValueName: "{#AppIdName}.script"; ValueData: ""; Flags: uninsdeletevalue
Root: HKA; Subkey: "Software\Classes\.yaml\OpenWithProgids"; ValueType: string; ValueName: "{#AppIdName}.script"; ValueData: ""; Flags: uninsdeletevalue
Root: HKA; Subkey: "Software\Classes\.yml\OpenWithProgids"; ValueType: string; ValueName: "{#AppIdName}.script"; ValueData: ""; Flags: uninsdeletevalue
Root: HKA; Subkey: "Software\Classes\.toml\OpenWithProgids"; ValueType: string; ValueName: "{#AppIdName}.script"; ValueData: ""; Flags: uninsdeletevalue

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
