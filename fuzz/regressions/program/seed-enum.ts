enum E { A }
return E.A